// glibc's allocator controls (malloc_trim), which the Glibc module
// does not export. The agent trims its heap after start-up (ColdPages).
#include <malloc.h>
