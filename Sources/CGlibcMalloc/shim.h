// glibc's allocator controls (mallopt, malloc_trim), which the Glibc module
// does not export. The agent uses them to keep its heap small (ColdPages).
#include <malloc.h>
