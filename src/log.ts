/**
 * Logging and tracing.
 *
 * Owns: the daemon's log lines (stderr, one line each, prefixed `siblingfs:`) and the
 * `siblingfs:op` diagnostics channel. Tracing costs nothing unless someone subscribes:
 * publishers check `hasSubscribers` before building a message.
 * Does not: decide what is an error worth logging; callers do.
 */
import diagnostics from 'node:diagnostics_channel'

export const opChannel = diagnostics.channel('siblingfs:op')

let quiet = false
export function setQuiet (q: boolean): void { quiet = q }

export function log (msg: string): void {
  if (!quiet) process.stderr.write('siblingfs: ' + msg + '\n')
}

/** Logs `msg` once per `key` for the life of the process. */
const seen = new Set<string>()
export function logOnce (key: string, msg: string): void {
  if (seen.has(key)) return
  seen.add(key)
  log(msg)
}
