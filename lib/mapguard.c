/*
 * mapguard.c: memory operations on a file mapping that turn the mapping's
 * SIGBUS into an error return (see mapguard.h).
 *
 * The handler runs on the faulting thread, finds that thread's jump buffer
 * (thread-local, initial-exec so reading it in a handler touches no lazy
 * TLS machinery) and jumps back into the guarded call, which returns
 * -EFAULT.  SA_NODEFER leaves SIGBUS unblocked while the handler runs, so
 * a plain sigsetjmp(buf, 0) (no signal-mask syscall per call) is enough:
 * after the jump the next fault is delivered again.  prev_sigbus is
 * written only while our handler is not installed or under the install
 * lock before it is (re)installed.
 */
#include "mapguard.h"

#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

static __thread sigjmp_buf *guard_jmp __attribute__((tls_model("initial-exec")));
static __thread bool sigbus_unblocked __attribute__((tls_model("initial-exec")));
static struct sigaction prev_sigbus;

static void sigbus_handler(int sig, siginfo_t *si, void *uc)
{
	/* a fault of this thread's own access (si_code > 0: BUS_ADRERR,
	 * BUS_OBJERR, ...), not a SIGBUS sent by kill(2), tgkill(2) or
	 * sigqueue(3) (si_code <= 0: SI_USER, SI_TKILL, SI_QUEUE), which
	 * re-runs nothing when the handler returns (sigaction(2), siginfo_t) */
	bool fault = si && si->si_code > 0;
	sigjmp_buf *jb = guard_jmp;
	if (jb && fault) {
		guard_jmp = NULL;
		siglongjmp(*jb, 1);
	}
	/* not a guarded access: what would have happened without us.  A
	 * function if the old disposition was neither SIG_DFL nor SIG_IGN,
	 * whatever its flags say (sa_handler and sa_sigaction share their
	 * storage: SIG_IGN with SA_SIGINFO reads as sa_sigaction 1) */
	if (prev_sigbus.sa_handler != SIG_DFL && prev_sigbus.sa_handler != SIG_IGN) {
		if (prev_sigbus.sa_flags & SA_SIGINFO)
			prev_sigbus.sa_sigaction(sig, si, uc);
		else
			prev_sigbus.sa_handler(sig);
		return;
	}
	if (!fault) {
		/* a sent signal: ignored, or delivered once more with the
		 * default action (the process dies, as without us); our
		 * handler stays for the mapping's faults if it lives */
		if (prev_sigbus.sa_handler == SIG_IGN)
			return;
		signal(SIGBUS, SIG_DFL);
		raise(SIGBUS);
		return;
	}
	/* default action: returning re-runs the faulting access, which
	 * faults again with the default disposition and kills the process
	 * (the kernel does that also when the old disposition was SIG_IGN) */
	signal(SIGBUS, SIG_DFL);
}

int rlfs_map_guard_install(void)
{
	static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
	struct sigaction cur, sa;
	int err = 0;
	pthread_mutex_lock(&lock);
	/* ours already (the usual case after the first call)?  Someone may
	 * have put another handler in since (a test harness does, per test):
	 * then ours goes back in front of it. */
	if (sigaction(SIGBUS, NULL, &cur)) {
		err = -errno;
	} else if (!((cur.sa_flags & SA_SIGINFO) && cur.sa_sigaction == sigbus_handler)) {
		memset(&sa, 0, sizeof(sa));
		sa.sa_sigaction = sigbus_handler;
		sa.sa_flags = SA_SIGINFO | SA_NODEFER | SA_ONSTACK;
		sigemptyset(&sa.sa_mask);
		prev_sigbus = cur;
		if (sigaction(SIGBUS, &sa, NULL))
			err = -errno;
	}
	pthread_mutex_unlock(&lock);
	return err;
}

/*
 * A SIGBUS raised by a fault while the thread blocks SIGBUS is not
 * delivered to a handler: the kernel kills the process (force_sig_fault).
 * Threads made with every signal blocked (the daemon's workers, so that
 * only the main thread takes SIGINT/SIGTERM) must let SIGBUS through: the
 * first guarded call on a thread unblocks it for good.
 */
static void unblock_sigbus(void)
{
	sigset_t bus;
	sigemptyset(&bus);
	sigaddset(&bus, SIGBUS);
	pthread_sigmask(SIG_UNBLOCK, &bus, NULL);
	sigbus_unblocked = true;
}

/* The guarded section: the compiler barriers keep the memory operation
 * between setting and clearing the jump buffer. */
#define GUARDED(...)                                            \
	do {                                                    \
		sigjmp_buf jb;                                  \
		if (!sigbus_unblocked)                          \
			unblock_sigbus();                       \
		if (sigsetjmp(jb, 0)) {                         \
			guard_jmp = NULL;                       \
			return -EFAULT;                         \
		}                                               \
		guard_jmp = &jb;                                \
		__asm__ __volatile__("" ::: "memory");          \
		__VA_ARGS__;                                    \
		__asm__ __volatile__("" ::: "memory");          \
		guard_jmp = NULL;                               \
	} while (0)

int rlfs_map_copy(void *dst, const void *src, size_t n)
{
	GUARDED(memcpy(dst, src, n));
	return 0;
}

int rlfs_map_zero(void *dst, size_t n)
{
	GUARDED(memset(dst, 0, n));
	return 0;
}

int rlfs_map_cmp(const void *a, const void *b, size_t n)
{
	static const uint8_t zeros[4096];
	volatile int differ = 0;
	if (!a && !b)
		return 0;
	if (a && b) {
		GUARDED(differ = memcmp(a, b, n) != 0);
		return differ;
	}
	const uint8_t *x = a ? a : b;
	GUARDED(
		for (size_t i = 0; i < n && !differ; i += sizeof(zeros)) {
			size_t k = n - i < sizeof(zeros) ? n - i : sizeof(zeros);
			differ = memcmp(x + i, zeros, k) != 0;
		});
	return differ;
}
