/**
 * The one place where errors become errno values for the kernel.
 *
 * Contract: `toErrno(err)` returns a negative errno. Errors are mapped by their `code`
 * name (Node's fs errors and SiblingError both carry one). Anything else, or an unknown
 * name, becomes EIO and is logged once per (operation, code): never ENOSYS, which the
 * kernel would remember (for ACCESS it means "allow everything"), and never -1 (EPERM).
 */
import os from 'node:os'
import { errorCode } from '../errors.js'
import { logOnce } from '../log.js'

const ERRNO = os.constants.errno as Record<string, number | undefined>
const EIO = ERRNO.EIO ?? 5

export function toErrno (err: unknown, op: string): number {
  const code = errorCode(err)
  if (code !== undefined) {
    const n = ERRNO[code === 'ENOTSUP' ? 'EOPNOTSUPP' : code]
    if (n !== undefined) return -n
  }
  logOnce(op + ':' + String(code), `${op} failed with an unexpected error, answering EIO: ${err instanceof Error ? err.stack ?? err.message : String(err)}`)
  return -EIO
}

/** The negative errno of a name, for handlers that answer one directly. */
export function errno (name: string): number {
  return -(ERRNO[name] ?? EIO)
}
