/* edgeforge bench firmware: the porting layer. One implementation per board lives in ports/<board>/.
 *
 * The protocol core (ef_bench.c) only talks to the board through these functions. All are called from one
 * thread (the bench loop); none is called from an interrupt. */
#ifndef EF_PORT_H_
#define EF_PORT_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Serial port (115200 8N1 unless the port says otherwise), timers and, where the port has them, the stack
 * paint. Called once, first thing in ef_bench_boot(). */
void ef_port_init(void);

/* Blocks until a byte arrives; returns it (0..255), or -1 when the stream has ended (the host port at end of
 * stdin; a UART never ends). */
int ef_port_getc(void);

/* Writes n bytes; blocks until they are handed to the hardware/OS (no buffering left behind: after the
 * closing m-ready nothing may stay queued in the firmware). */
void ef_port_write(const char* data, size_t n);

/* Free-running microseconds since ef_port_init(); wraps at 2^32 (~71.6 min). */
uint32_t ef_port_time_us(void);

/* Free-running CPU cycle counter (wraps at 2^32), or 0 when the port has none. */
uint32_t ef_port_cycles(void);

/* Short identification of the two clocks, for the ef-ops report (static strings), and the CPU clock in Hz
 * (0 when unknown). */
const char* ef_port_timer_name(void);
const char* ef_port_cycles_name(void);
uint32_t ef_port_cpu_hz(void);

/* Stack high-water mark in bytes measured from a painted stack region, and the size of that region; both
 * -1 when the port cannot measure them. */
int32_t ef_port_stack_hwm(void);
int32_t ef_port_stack_size(void);

/* Resets the board (never returns). Ports call it from fault/watchdog handlers; the host port exits. */
void ef_port_reset(void);

#ifdef __cplusplus
}
#endif

#endif /* EF_PORT_H_ */
