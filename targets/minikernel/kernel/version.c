/*
 * The banner start_kernel prints first.  build.sh passes LINUX_COMPILER,
 * the first lines of `gcc --version` and `ld --version`, as Linux's
 * compile.h does; a rebuild with another toolchain shows in the banner.
 */
#include <linux/kernel.h>

#ifndef LINUX_COMPILER
#error "LINUX_COMPILER is not defined: build with targets/minikernel/build.sh"
#endif

#define UTS_RELEASE	"6.1.0-minikernel"
#define UTS_VERSION	"#1 SMP"

const char linux_banner[] =
	"Linux version " UTS_RELEASE " (kgdbstub@minikernel) ("
	LINUX_COMPILER ") " UTS_VERSION "\n";
