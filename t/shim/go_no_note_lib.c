/* go_no_note_lib: a shared library go_no_note links with, standing for Go
 * code built without its note (`go build -ldflags=-buildid=`, as
 * reproducible builds do): no ".note.go.buildid", but cgo's entry for C
 * calling Go, crosscall2, exported as from every Go executable or library
 * that uses cgo.  No Go toolchain is needed to build it. */
void crosscall2(void (*fn)(void), void *a, int n, unsigned long ctxt);
void crosscall2(void (*fn)(void), void *a, int n, unsigned long ctxt)
{
    (void)a, (void)n, (void)ctxt;
    fn();
}

int go_no_note_linked(void) { return 4; }
