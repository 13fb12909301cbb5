/*
 * proofrace-jail: confine one prover process, then exec it.
 *
 *   proofrace-jail [--cwd DIR] [--cpu S] [--as BYTES] [--fsize BYTES] [--rw DIR]...
 *                  [--ro PATH]... [--no-sandbox] -- PROVER ARGS...
 *   proofrace-jail --probe          prints the Landlock ABI the kernel offers (0: none)
 *
 * In this order, in the process that becomes the prover (one extra exec, nothing in the
 * parent after fork, so it works with fork, vfork or posix_spawn alike):
 *   1. rlimits: CPU seconds (hard limit one more), address space, file size, no core files;
 *      then into --cwd, and every descriptor but stdin, stdout and stderr closed;
 *   2. PR_SET_NO_NEW_PRIVS;
 *   3. a Landlock ruleset: read and execute only under the --ro paths, read and write only
 *      under the --rw paths (the attempt's directory); no TCP bind or connect; no signals
 *      and no abstract Unix sockets beyond its own domain (every attempt has its own);
 *   4. a seccomp filter refusing socket() (Landlock does not cover UDP or pathname Unix
 *      sockets) and every syscall of a foreign ABI (32-bit, x32);
 *   5. execve of the prover.
 * Any step that fails ends the launch with exit code 126 and one line on stderr: the prover
 * never runs half-confined; an exec that fails ends it with 127. Either line starts with
 * "proofrace-jail: ". --no-sandbox keeps step 1 only.
 * SYS_close_range needs Linux 5.9, as Landlock (5.13) does anyway.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Landlock's ABI, declared here so that older kernel headers (Debian 12 ships ABI 2) build
 * a launcher that still uses whatever the running kernel offers. */
#define LL_CREATE_RULESET_VERSION (1U << 0)
#define LL_RULE_PATH_BENEATH 1
#define LL_FS_EXECUTE (1ULL << 0)
#define LL_FS_WRITE_FILE (1ULL << 1)
#define LL_FS_READ_FILE (1ULL << 2)
#define LL_FS_READ_DIR (1ULL << 3)
#define LL_FS_ALL_V1 ((1ULL << 13) - 1)
#define LL_FS_REFER (1ULL << 13)     /* ABI 2 */
#define LL_FS_TRUNCATE (1ULL << 14)  /* ABI 3 */
#define LL_FS_IOCTL_DEV (1ULL << 15) /* ABI 5 */
#define LL_NET_BIND_TCP (1ULL << 0)  /* ABI 4 */
#define LL_NET_CONNECT_TCP (1ULL << 1)
#define LL_SCOPE_ABSTRACT_UNIX (1ULL << 0) /* ABI 6 */
#define LL_SCOPE_SIGNAL (1ULL << 1)

struct ll_ruleset_attr {
  uint64_t handled_access_fs;
  uint64_t handled_access_net;
  uint64_t scoped;
};

struct ll_path_beneath {
  uint64_t allowed_access;
  int32_t parent_fd;
} __attribute__((packed));

#define MAX_PATHS 64

static void fail(const char *what, const char *detail) {
  fprintf(stderr, "proofrace-jail: %s%s%s: %s\n", what, detail ? " " : "", detail ? detail : "",
          strerror(errno));
  exit(126);
}

static int landlock_abi(void) {
  long abi = syscall(SYS_landlock_create_ruleset, NULL, 0, LL_CREATE_RULESET_VERSION);
  return abi < 0 ? 0 : (int)abi;
}

static uint64_t fs_rights(int abi) {
  uint64_t rights = LL_FS_ALL_V1;
  if (abi >= 2) rights |= LL_FS_REFER;
  if (abi >= 3) rights |= LL_FS_TRUNCATE;
  if (abi >= 5) rights |= LL_FS_IOCTL_DEV;
  return rights;
}

static void allow(int ruleset, const char *path, uint64_t access, uint64_t handled) {
  int fd = open(path, O_PATH | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return; /* a system directory this machine does not have */
    fail("cannot open", path);
  }
  struct stat info;
  if (fstat(fd, &info) != 0) fail("cannot stat", path);
  /* Directory-only rights cannot be granted on a file. */
  if (!S_ISDIR(info.st_mode))
    access &= LL_FS_EXECUTE | LL_FS_WRITE_FILE | LL_FS_READ_FILE | LL_FS_TRUNCATE | LL_FS_IOCTL_DEV;
  struct ll_path_beneath rule = {.allowed_access = access & handled, .parent_fd = fd};
  if (syscall(SYS_landlock_add_rule, ruleset, LL_RULE_PATH_BENEATH, &rule, 0) != 0)
    fail("cannot add a rule for", path);
  close(fd);
}

static void landlock(const char **ro, int n_ro, const char **rw, int n_rw) {
  int abi = landlock_abi();
  if (abi < 1) {
    errno = ENOSYS;
    fail("Landlock is not available in this kernel", NULL);
  }
  struct ll_ruleset_attr attr = {.handled_access_fs = fs_rights(abi)};
  size_t size = offsetof(struct ll_ruleset_attr, handled_access_net);
  if (abi >= 4) {
    attr.handled_access_net = LL_NET_BIND_TCP | LL_NET_CONNECT_TCP; /* no rule: no TCP */
    size = offsetof(struct ll_ruleset_attr, scoped);
  }
  if (abi >= 6) {
    attr.scoped = LL_SCOPE_ABSTRACT_UNIX | LL_SCOPE_SIGNAL;
    size = sizeof attr;
  }
  int ruleset = (int)syscall(SYS_landlock_create_ruleset, &attr, size, 0);
  if (ruleset < 0) fail("cannot create a Landlock ruleset", NULL);
  uint64_t read_exec = LL_FS_EXECUTE | LL_FS_READ_FILE | LL_FS_READ_DIR;
  for (int i = 0; i < n_ro; i++) allow(ruleset, ro[i], read_exec, attr.handled_access_fs);
  for (int i = 0; i < n_rw; i++) allow(ruleset, rw[i], attr.handled_access_fs, attr.handled_access_fs);
  if (syscall(SYS_landlock_restrict_self, ruleset, 0) != 0) fail("cannot enter the Landlock domain", NULL);
  close(ruleset);
}

#if defined(__x86_64__)
#define JAIL_ARCH AUDIT_ARCH_X86_64
#define FOREIGN_ABI_BIT 0x40000000U /* x32 syscalls */
#elif defined(__aarch64__)
#define JAIL_ARCH AUDIT_ARCH_AARCH64
#define FOREIGN_ABI_BIT 0U
#else
#error "proofrace-jail: add this architecture's seccomp constants"
#endif

static void seccomp_filter(void) {
  struct sock_filter program[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, JAIL_ARCH, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, FOREIGN_ABI_BIT ? FOREIGN_ABI_BIT : 0xffffffffU, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_socket, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EACCES),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  struct sock_fprog filter = {.len = sizeof program / sizeof program[0], .filter = program};
  if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &filter) != 0) fail("cannot install the seccomp filter", NULL);
}

static void limit(int resource, unsigned long long soft, unsigned long long hard, const char *name) {
  struct rlimit value = {.rlim_cur = soft, .rlim_max = hard};
  if (setrlimit(resource, &value) != 0) fail("cannot set", name);
}

static unsigned long long number(const char *text, const char *option) {
  char *end;
  errno = 0;
  unsigned long long value = strtoull(text, &end, 10);
  if (errno || *end || !*text) {
    errno = EINVAL;
    fail("bad number for", option);
  }
  return value;
}

int main(int argc, char **argv) {
  const char *ro[MAX_PATHS], *rw[MAX_PATHS];
  int n_ro = 0, n_rw = 0, sandbox = 1, i = 1;
  unsigned long long cpu = 0, as = 0, fsize = 0;
  const char *cwd = NULL;
  if (argc == 2 && strcmp(argv[1], "--probe") == 0) {
    printf("%d\n", landlock_abi());
    return 0;
  }
  for (; i < argc && strcmp(argv[i], "--") != 0; i++) {
    const char *option = argv[i];
    if (strcmp(option, "--no-sandbox") == 0) {
      sandbox = 0;
      continue;
    }
    if (i + 1 >= argc) {
      errno = EINVAL;
      fail("missing value for", option);
    }
    const char *value = argv[++i];
    if (strcmp(option, "--cpu") == 0) cpu = number(value, option);
    else if (strcmp(option, "--as") == 0) as = number(value, option);
    else if (strcmp(option, "--fsize") == 0) fsize = number(value, option);
    else if (strcmp(option, "--cwd") == 0) cwd = value;
    else if (strcmp(option, "--ro") == 0 && n_ro < MAX_PATHS) ro[n_ro++] = value;
    else if (strcmp(option, "--rw") == 0 && n_rw < MAX_PATHS) rw[n_rw++] = value;
    else {
      errno = EINVAL;
      fail("unknown or repeated too often:", option);
    }
  }
  if (i + 1 >= argc) {
    errno = EINVAL;
    fail("usage: proofrace-jail [options] -- prover args...", NULL);
  }
  if (cpu) limit(RLIMIT_CPU, cpu, cpu + 1, "RLIMIT_CPU");
  if (as) limit(RLIMIT_AS, as, as, "RLIMIT_AS");
  if (fsize) limit(RLIMIT_FSIZE, fsize, fsize, "RLIMIT_FSIZE");
  limit(RLIMIT_CORE, 0, 0, "RLIMIT_CORE");
  if (cwd && chdir(cwd) != 0) fail("cannot enter", cwd);
  /* Only stdin, stdout and stderr reach the prover, whatever its parent left open. */
  if (syscall(SYS_close_range, 3U, ~0U, 0U) != 0 && errno != ENOSYS) fail("cannot close descriptors", NULL);
  if (sandbox) {
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) fail("cannot set no_new_privs", NULL);
    landlock(ro, n_ro, rw, n_rw);
    seccomp_filter();
  }
  execvp(argv[i + 1], &argv[i + 1]);
  fprintf(stderr, "proofrace-jail: cannot execute %s: %s\n", argv[i + 1], strerror(errno));
  return 127; /* as a shell says it: the program could not be run */
}
