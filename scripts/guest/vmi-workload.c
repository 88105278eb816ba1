/*
 * vmi-workload: guest programs with known behaviour for the event and tracing tests and
 * benchmarks of live guests (scripts/fixture-live appends it to the guest as /bin/vmi-workload;
 * the guest's live command loop starts it on "run ARGS").
 *
 * Each mode prints one line on stdout once it is set up,
 *   VMI-WORKLOAD mode=<mode> pid=<pid> counter=0x<va>
 * (counter: a 64-bit global the mode increments, see below) and then works forever:
 *
 *  exec K      rounds of K children: child I of round R is fork()ed and exec()s
 *              "/bin/vmi-workload child R I" (exits at once); the parent waits for each, and
 *              sleeps 100 ms after each round. counter = completed rounds.
 *  open K      rounds of K opens: open("/tmp/vmi-open-R-I", O_WRONLY|O_CREAT|O_TRUNC, 0644)
 *              and close for I in 0..K, then one open("/vmi-missing-R", O_RDONLY) that fails
 *              with ENOENT; 100 ms after each round. counter = completed rounds.
 *  loop        open("/bin/vmi-workload", O_RDONLY) + close in a tight loop (the notes' hot
 *              syscall path for breakpoint costs). counter = iterations.
 *  count       counter++ in a tight loop (a watchpoint fires on every write).
 *  ftrace SYM  turns the kernel's function tracer on SYM on and off every 300 ms, so the
 *              entry of SYM is rewritten (nop5 <-> call) under a breakpoint on it.
 *              counter = toggles.
 *  tick        a counter in a page of its own (mmap, so at an address no other process
 *              writes: TCG watchpoints match a virtual address in every address space)
 *              bumped every 10 ms; counter= is that page's counter.
 *  step        calls vmi_straight_line() every 10 ms: a function of straight-line
 *              instructions (no branch until its ret), so single-stepping it from its entry
 *              must land on each instruction `objdump -d` lists for it, in order. Its line
 *              also gives step=0x<its address>. counter = calls.
 *  child R I   exits 0 (the exec mode's children).
 *
 * So a tracer that saw any event of round R-1 and of round R+1 must have seen all of round R,
 * each once: no host-to-guest synchronisation is needed to count misses and duplicates.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

__attribute__((used)) volatile uint64_t vmi_workload_counter = 0;

/* Straight-line code for the single-step test: instructions of several lengths, no branch. */
__attribute__((noinline, used)) void vmi_straight_line(void)
{
    __asm__ volatile("nop\n\t"
                     "mov $0x12345678, %%eax\n\t"
                     "add %%eax, %%eax\n\t"
                     "lea 0x8(%%rsp), %%rdx\n\t"
                     "xor %%ecx, %%ecx\n\t"
                     "movabs $0x1122334455667788, %%r8\n\t"
                     "nopl 0x0(%%rax,%%rax,1)\n\t"
                     "inc %%ecx\n\t"
                     "shl $3, %%r8\n\t"
                     "mov %%r8, %%r9\n\t"
                     ::: "eax", "ecx", "edx", "r8", "r9", "cc");
}

static void announce(const char *mode)
{
    printf("VMI-WORKLOAD mode=%s pid=%d counter=%p\n", mode, (int)getpid(),
           (void *)&vmi_workload_counter);
    fflush(stdout);
}

static void sleep_ms(long ms)
{
    struct timespec t = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L };
    nanosleep(&t, NULL);
}

static int write_file(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_TRUNC);
    if (fd < 0)
        return -1;
    ssize_t n = write(fd, text, strlen(text));
    close(fd);
    return n == (ssize_t)strlen(text) ? 0 : -1;
}

static int exec_rounds(long k)
{
    announce("exec");
    for (long r = 0;; r++) {
        for (long i = 0; i < k; i++) {
            pid_t pid = fork();
            if (pid == 0) {
                char rs[24], is[24];
                snprintf(rs, sizeof rs, "%ld", r);
                snprintf(is, sizeof is, "%ld", i);
                execl("/bin/vmi-workload", "/bin/vmi-workload", "child", rs, is, (char *)NULL);
                _exit(127);
            }
            if (pid > 0)
                waitpid(pid, NULL, 0);
        }
        vmi_workload_counter++;
        sleep_ms(100);
    }
    return 0;
}

static int open_rounds(long k)
{
    announce("open");
    for (long r = 0;; r++) {
        char path[64];
        for (long i = 0; i < k; i++) {
            snprintf(path, sizeof path, "/tmp/vmi-open-%ld-%ld", r, i);
            int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
            if (fd >= 0)
                close(fd);
            unlink(path);
        }
        snprintf(path, sizeof path, "/vmi-missing-%ld", r);
        int fd = open(path, O_RDONLY);
        if (fd >= 0)
            close(fd);
        vmi_workload_counter++;
        sleep_ms(100);
    }
    return 0;
}

static int ftrace_toggle(const char *sym)
{
    const char *dir = "/sys/kernel/tracing";
    mkdir("/sys", 0755);
    mount("sysfs", "/sys", "sysfs", 0, NULL);
    if (access("/sys/kernel/tracing/current_tracer", F_OK) != 0)
        mount("tracefs", dir, "tracefs", 0, NULL);
    if (write_file("/sys/kernel/tracing/set_ftrace_filter", sym) != 0) {
        fprintf(stderr, "vmi-workload: cannot filter ftrace on %s: %s\n", sym, strerror(errno));
        return 1;
    }
    announce("ftrace");
    for (;;) {
        write_file("/sys/kernel/tracing/current_tracer", "function");
        sleep_ms(300);
        write_file("/sys/kernel/tracing/current_tracer", "nop");
        vmi_workload_counter++;
        sleep_ms(300);
    }
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "";
    long k = argc > 2 ? strtol(argv[2], NULL, 10) : 0;
    if (strcmp(mode, "child") == 0)
        return 0;
    if (strcmp(mode, "exec") == 0 && k > 0 && k < 1000)
        return exec_rounds(k);
    if (strcmp(mode, "open") == 0 && k > 0 && k < 1000)
        return open_rounds(k);
    if (strcmp(mode, "ftrace") == 0 && argc > 2)
        return ftrace_toggle(argv[2]);
    if (strcmp(mode, "loop") == 0) {
        announce("loop");
        for (;;) {
            int fd = open("/bin/vmi-workload", O_RDONLY);
            if (fd >= 0)
                close(fd);
            vmi_workload_counter++;
        }
    }
    if (strcmp(mode, "count") == 0) {
        announce("count");
        for (;;)
            vmi_workload_counter++;
    }
    if (strcmp(mode, "tick") == 0) {
        volatile uint64_t *own = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
                                      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (own == MAP_FAILED)
            return 1;
        *own = 0;
        printf("VMI-WORKLOAD mode=tick pid=%d counter=%p\n", (int)getpid(), (void *)own);
        fflush(stdout);
        for (;;) {
            sleep_ms(10);
            (*own)++;
        }
    }
    if (strcmp(mode, "step") == 0) {
        printf("VMI-WORKLOAD mode=step pid=%d counter=%p step=%p\n", (int)getpid(),
               (void *)&vmi_workload_counter, (void *)vmi_straight_line);
        fflush(stdout);
        for (;;) {
            vmi_straight_line();
            vmi_workload_counter++;
            sleep_ms(10);
        }
    }
    fprintf(stderr, "usage: vmi-workload exec K | open K | loop | count | tick | step | ftrace SYM\n");
    return 2;
}
