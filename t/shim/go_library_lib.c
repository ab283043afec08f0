/* go_library_lib: a shared library go_library links with, standing for one
 * built by `go build -buildmode=c-shared`: it carries the note Go's linker
 * puts in everything it links (owner "Go", type 4, the build id), which is
 * what tells the preload shim that Go's runtime is in the process.  No Go
 * toolchain is needed to build it. */
struct go_note {
    unsigned namesz, descsz, type;
    char name[4];
    char desc[8];
};
__attribute__((used, section(".note.go.buildid"), aligned(4)))
static const struct go_note go_buildid = {4, 8, 4, "Go", "testbid"};

int go_library_linked(void) { return go_buildid.type; }
