#include "real.hpp"

#include <dlfcn.h>
#include <cstdio>

namespace shim {

Real real;

bool real_init() {
    bool ok = true;
#define SHIM_REAL(ret, name, args)                                                    \
    real.name = reinterpret_cast<ret(*) args>(dlsym(RTLD_NEXT, #name));               \
    if (!real.name) ok = false;
#include "real.def"
#undef SHIM_REAL
    return ok;
}

} // namespace shim
