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
 * It prints exactly one line,
 *   VMI-TARGET pid=<pid> heap=0x<va> data=0x<va> counter=0x<va> threads=<N>
 * flushes stdout and then runs forever. Any other arguments are accepted and
 * ignored, so the fixture can give each instance a known command line.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <time.h>
#include <unistd.h>

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
    int title = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc)
            threads = strtol(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--title") == 0)
            title = 1;
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
