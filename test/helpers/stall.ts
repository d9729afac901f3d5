/**
 * Preloaded into a daemon (NODE_OPTIONS=--require) by tests that need a request JavaScript
 * answers to take long: when the FUSE boundary starts operation SIBLINGFS_STALL_OP on path
 * SIBLINGFS_STALL_PATH (the `siblingfs:op` diagnostics channel, src/log.ts), the JS thread
 * sleeps SIBLINGFS_STALL_MS milliseconds, once, before answering it.
 */
import diagnostics from 'node:diagnostics_channel'

const op = process.env.SIBLINGFS_STALL_OP
const at = process.env.SIBLINGFS_STALL_PATH
const ms = Number(process.env.SIBLINGFS_STALL_MS ?? '0')
if (op !== undefined && at !== undefined && ms > 0) {
  let done = false
  diagnostics.channel('siblingfs:op').subscribe((m) => {
    const e = m as { op: string, path: string | null }
    if (done || e.op !== op || e.path !== at) return
    done = true
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms)
  })
}
