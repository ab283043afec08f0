// What the fuzz targets share: the input as a stream of choices, the
// descriptor count of the process, and the way a broken promise is
// reported (abort, which libFuzzer records as a crash with its input).
#pragma once
#include <cstdarg>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dirent.h>
#include <sanitizer/common_interface_defs.h>
#include <unistd.h>

namespace fuzz {

// The input read front to back; past its end every choice is 0.
struct Input {
    const uint8_t *p;
    size_t n;
    bool empty() const { return n == 0; }
    uint8_t u8() {
        if (!n) return 0;
        n--;
        return *p++;
    }
    uint16_t u16() { return uint16_t(u8() | u8() << 8); }
    uint32_t u32() { return uint32_t(u16()) | uint32_t(u16()) << 16; }
    uint64_t u64() { return uint64_t(u32()) | uint64_t(u32()) << 32; }
    unsigned below(unsigned k) { return k ? u8() % k : 0; }
    bool flip() { return u8() & 1; }
    // Up to max bytes, stopping at a 0 byte (a C string's worth).
    size_t str(char *out, size_t max) {
        size_t k = 0;
        while (k + 1 < max && n) {
            uint8_t c = u8();
            if (!c) break;
            out[k++] = char(c);
        }
        out[k] = 0;
        return k;
    }
};

[[noreturn]] inline void fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("fuzz: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    abort();
}

// The sanitizers' symbolizer runs as a child process on two pipes, started
// the first time a PC is named (libFuzzer names each newly covered
// function): started before the descriptors are counted, it is not a leak.
inline void start_symbolizer() {
    char buf[256];
    __sanitizer_symbolize_pc(__builtin_return_address(0), "%p %F %L", buf, sizeof buf);
}

// Open descriptors of the process (the directory's own not counted), or
// only those whose /proc/self/fd link starts with kind ("pipe:").
inline int open_fds(const char *kind = nullptr) {
    DIR *d = opendir("/proc/self/fd");
    if (!d) return -1;
    int k = 0;
    while (struct dirent *de = readdir(d)) {
        if (de->d_name[0] == '.') continue;
        if (kind) {
            char path[300], to[256];
            snprintf(path, sizeof path, "/proc/self/fd/%s", de->d_name);
            ssize_t n = readlink(path, to, sizeof to - 1);
            to[n > 0 ? n : 0] = 0;
            if (strncmp(to, kind, strlen(kind))) continue;
        }
        k++;
    }
    closedir(d);
    return kind ? k : k - 1;
}

inline void list_fds() {
    DIR *d = opendir("/proc/self/fd");
    if (!d) return;
    while (struct dirent *de = readdir(d)) {
        if (de->d_name[0] == '.') continue;
        char path[300], to[256];
        snprintf(path, sizeof path, "/proc/self/fd/%s", de->d_name);
        ssize_t k = readlink(path, to, sizeof to - 1);
        to[k > 0 ? k : 0] = 0;
        fprintf(stderr, "  fd %s -> %s\n", de->d_name, to);
    }
    closedir(d);
}

} // namespace fuzz
