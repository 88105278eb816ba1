/*
 * vmi-target: a process with known contents, started by the fixture guest's init.
 *
 * The fixture's tests look for these values in a memory dump and compare them
 * with what the guest said about itself, so every value here is deliberate:
 *
 *  - VMI-HEAP-SECRET-<pid>: a malloc'd string (heap, so in [heap] of a static
 *    binary), different per process, to check per-process translation.
 *  - vmi_data_secret: an initialized, writable global, so it lands in .data
 *    (not .rodata, not .bss) and is backed by the binary's file mapping.
 *  - vmi_counter: a 64-bit counter in .data that the main thread bumps about
 *    every 10 ms, so a live reader can watch memory change.
 *  - --threads N: N extra threads that only sleep, so the task has several
 *    threads (task->signal->thread list, /proc/PID/task).
 *
 * Live guests (scripts/fixture-live): the main thread also watches its heap
 * secret; when a debugger or VMI tool writes into it, it prints
 *   VMI-HEAP-CHANGED pid=<pid> value=<the new string>
 * once per change on the serial console (/dev/ttyS0), so a host sees the guest
 * react to a write. Nothing is printed while the secret is untouched, so the
 * output of fixture guests is unchanged.
 *
 * --title: before printing, the process rewrites its title over its argument
 * area the way sshd, postgres and nginx do (setproctitle): TITLE below, longer
 * than the arguments, written from argv[0] on into the environment strings
 * that follow them, so the last byte of the argument area is not NUL and
 * /proc/PID/cmdline shows the title.
 *
 * --fds PORT: before printing, the process opens one of each kind of file a responder asks
 * about, so `vmi lsof` and `vmi sockets` have known answers (the truth is /proc/PID/fd,
 * fdinfo and /proc/net, printed by init): a regular file read to a known position, a file
 * opened O_APPEND, a deleted-but-open file, a directory, a pipe, an eventfd, a timerfd, an
 * epoll fd, a memfd, a Unix socketpair, a Unix listener on a path and one in the abstract
 * namespace, TCP listeners on 127.0.0.1:PORT and [::1]:PORT+1, an established TCP connection
 * to the first (both ends are this process's fds), UDP sockets bound to 127.0.0.1:PORT+2 and
 * [::1]:PORT+3, a netlink (route) socket and a packet socket.
 * --as UID: drops root for uid and gid UID (real, effective, saved) with supplementary
 * groups 24 and UID+1, so the process's credentials are known and all its capabilities gone.
 * --seccomp: installs an allow-everything seccomp filter (mode 2, with no_new_privs), so the
 * process's seccomp mode is known.
 *
 * It prints exactly one line,
 *   VMI-TARGET pid=<pid> heap=0x<va> data=0x<va> counter=0x<va> threads=<N>
 * flushes stdout and then runs forever. Any other arguments are accepted and
 * ignored, so the fixture can give each instance a known command line.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <linux/filter.h>
#include <linux/if_ether.h>
#include <linux/netlink.h>
#include <linux/seccomp.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <grp.h>

/* Not const, not static: keep it in .data and keep its symbol. */
__attribute__((used)) char vmi_data_secret[] = "VMI-DATA-SECRET";

/* Initialized to a non-zero value so the counter lives in .data, not .bss. */
#define VMI_COUNTER_START 0x1000000ULL
__attribute__((used)) volatile uint64_t vmi_counter = VMI_COUNTER_START;

/* Longer than the fixture's argv of a --title process, so it runs past it. */
#define TITLE "vmi-title: /bin/vmi-target -D [listener] 0 of 10-100 startups"

extern char **environ;

/* setproctitle: overwrite [argv[0], end of the last contiguous environment
 * string) with TITLE, NUL-padded. */
static void set_title(int argc, char **argv)
{
    char *start = argv[0];
    char *end = argv[argc - 1] + strlen(argv[argc - 1]) + 1;
    for (char **e = environ; *e; e++)
        if (*e == end)
            end = *e + strlen(*e) + 1;
    size_t room = (size_t)(end - start);
    size_t len = strlen(TITLE);
    if (len + 1 > room)
        len = room - 1;
    memset(start, 0, room);
    memcpy(start, TITLE, len);
}

static int must(int fd, const char *what)
{
    if (fd < 0) {
        fprintf(stderr, "vmi-target: %s failed\n", what);
        exit(1);
    }
    return fd;
}

static int inet_socket(int family, int type, int port, int listen_too)
{
    int s = must(socket(family, type, 0), "socket");
    int one = 1;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    int rc;
    if (family == AF_INET) {
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((unsigned short)port) };
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        rc = bind(s, (struct sockaddr *)&a, sizeof a);
    } else {
        struct sockaddr_in6 a = { .sin6_family = AF_INET6,
                                  .sin6_port = htons((unsigned short)port) };
        a.sin6_addr = in6addr_loopback;
        rc = bind(s, (struct sockaddr *)&a, sizeof a);
    }
    must(rc, "bind");
    if (listen_too)
        must(listen(s, 8), "listen");
    return s;
}

static int unix_listener(const char *path, int abstract)
{
    int s = must(socket(AF_UNIX, SOCK_STREAM, 0), "socket(AF_UNIX)");
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    size_t len = strlen(path);
    memcpy(a.sun_path + (abstract ? 1 : 0), path, len);
    socklen_t alen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + (abstract ? 1 : 0));
    if (!abstract)
        unlink(path);
    must(bind(s, (struct sockaddr *)&a, alen), "bind(AF_UNIX)");
    must(listen(s, 8), "listen(AF_UNIX)");
    return s;
}

/* One file of each kind (see the header comment); the fds stay open for ever. */
static void open_files(int port)
{
    char path[64];
    snprintf(path, sizeof path, "/tmp/vmi-fds-%d.txt", (int)getpid());
    int f = must(open(path, O_RDWR | O_CREAT | O_TRUNC, 0644), "open");
    char block[1234];
    memset(block, 'v', sizeof block);
    if (write(f, block, sizeof block) != (ssize_t)sizeof block)
        must(-1, "write");
    lseek(f, 1000, SEEK_SET);
    snprintf(path, sizeof path, "/tmp/vmi-append-%d.log", (int)getpid());
    must(open(path, O_WRONLY | O_CREAT | O_APPEND, 0600), "open(O_APPEND)");
    snprintf(path, sizeof path, "/tmp/vmi-deleted-%d", (int)getpid());
    must(open(path, O_RDWR | O_CREAT, 0600), "open(deleted)");
    unlink(path);
    must(open("/", O_RDONLY | O_DIRECTORY), "open(/)");
    int p[2];
    must(pipe(p), "pipe");
    must(eventfd(7, EFD_NONBLOCK), "eventfd");
    must(timerfd_create(CLOCK_MONOTONIC, 0), "timerfd");
    int ep = must(epoll_create1(EPOLL_CLOEXEC), "epoll");
    struct epoll_event ev = { .events = EPOLLIN, .data.fd = p[0] };
    epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev);
    must(memfd_create("vmi-memfd", 0), "memfd_create");
    int sp[2];
    must(socketpair(AF_UNIX, SOCK_STREAM, 0, sp), "socketpair");
    snprintf(path, sizeof path, "/tmp/vmi-%d.sock", (int)getpid());
    unix_listener(path, 0);
    snprintf(path, sizeof path, "vmi-abstract-%d", (int)getpid());
    unix_listener(path, 1);
    int l4 = inet_socket(AF_INET, SOCK_STREAM, port, 1);
    inet_socket(AF_INET6, SOCK_STREAM, port + 1, 1);
    int c = must(socket(AF_INET, SOCK_STREAM, 0), "socket(client)");
    struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons((unsigned short)port) };
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    must(connect(c, (struct sockaddr *)&to, sizeof to), "connect");
    must(accept(l4, NULL, NULL), "accept");
    inet_socket(AF_INET, SOCK_DGRAM, port + 2, 0);
    inet_socket(AF_INET6, SOCK_DGRAM, port + 3, 0);
    must(socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE), "socket(AF_NETLINK)");
    must(socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL)), "socket(AF_PACKET)");
}

/* Mode 2 with a filter that allows every call: the mode is visible, nothing changes. */
static void allow_all_seccomp(void)
{
    struct sock_filter allow = BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
    struct sock_fprog prog = { .len = 1, .filter = &allow };
    must(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "PR_SET_NO_NEW_PRIVS");
    must(prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog), "PR_SET_SECCOMP");
}

static void *sleeper(void *arg)
{
    (void)arg;
    for (;;)
        pause();
    return NULL;
}

int main(int argc, char **argv)
{
    long threads = 0;
    int title = 0, seccomp = 0;
    long fds_port = 0, as_uid = -1;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc)
            threads = strtol(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--title") == 0)
            title = 1;
        else if (strcmp(argv[i], "--fds") == 0 && i + 1 < argc)
            fds_port = strtol(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--as") == 0 && i + 1 < argc)
            as_uid = strtol(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--seccomp") == 0)
            seccomp = 1;
    }
    if (threads < 0 || threads > 64)
        threads = 0;

    /* 128 bytes: comfortably above the 64 the tests may assume. */
    char *heap = malloc(128);
    if (!heap)
        return 1;
    memset(heap, 0, 128);
    snprintf(heap, 128, "VMI-HEAP-SECRET-%d", (int)getpid());

    /* Start the threads before printing, so the line is only printed once the
     * process has its final shape. */
    for (long i = 0; i < threads; i++) {
        pthread_t t;
        if (pthread_create(&t, NULL, sleeper, NULL) != 0) {
            fprintf(stderr, "vmi-target: pthread_create failed\n");
            return 1;
        }
    }

    if (title)
        set_title(argc, argv);
    if (fds_port > 0 && fds_port < 65532)
        open_files((int)fds_port);
    if (seccomp)
        allow_all_seccomp();
    if (as_uid > 0 && as_uid < 60000) {
        gid_t groups[2] = { 24, (gid_t)as_uid + 1 };
        must(setgroups(2, groups), "setgroups");
        must(setresgid((gid_t)as_uid, (gid_t)as_uid, (gid_t)as_uid), "setresgid");
        must(setresuid((uid_t)as_uid, (uid_t)as_uid, (uid_t)as_uid), "setresuid");
    }

    printf("VMI-TARGET pid=%d heap=%p data=%p counter=%p threads=%ld\n",
           (int)getpid(), (void *)heap, (void *)vmi_data_secret,
           (void *)&vmi_counter, threads);
    fflush(stdout);

    char seen[128];
    memcpy(seen, heap, sizeof seen);
    const struct timespec tick = { .tv_sec = 0, .tv_nsec = 10 * 1000 * 1000 };
    for (;;) {
        nanosleep(&tick, NULL);
        vmi_counter++;
        /* volatile reads: the compiler must not assume the heap is unchanged. */
        int changed = 0;
        for (size_t i = 0; i < sizeof seen; i++)
            changed |= ((volatile char *)heap)[i] != seen[i];
        if (changed) {
            for (size_t i = 0; i < sizeof seen; i++)
                seen[i] = ((volatile char *)heap)[i];
            seen[sizeof seen - 1] = 0;
            char line[200];
            int n = snprintf(line, sizeof line, "VMI-HEAP-CHANGED pid=%d value=%s\n",
                             (int)getpid(), seen);
            int fd = open("/dev/ttyS0", O_WRONLY | O_NOCTTY);
            if (fd >= 0 && n > 0) {
                ssize_t w = write(fd, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
                (void)w;
            }
            if (fd >= 0)
                close(fd);
        }
    }
}
