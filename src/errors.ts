/**
 * Errors with a name and a hint.
 *
 * Owns: the one error type the rest of siblingfs throws on purpose.
 * - Inside the overlay, `code` is an errno name ('ENOENT', 'EXDEV', ...). The FUSE
 *   boundary (src/fuse/errno.ts) turns it into a negative errno; nothing else does.
 * - On the command line, `code` is a stable SFS_* name, `hint` says what to do, and
 *   `exitCode` is what the process exits with (src/cli/main.ts).
 * Errors thrown by Node's fs carry the same `code` field, so both kinds map the same way.
 * Does not: log, print or exit.
 */

export interface ErrorDetails {
  /** The path the operation was about (merged-view or on-disk, as the message says). */
  path?: string
  cause?: unknown
  /** One sentence that tells a person what to do about it. */
  hint?: string
  /** Process exit status when this error ends a command (default 1). */
  exitCode?: number
}

export class SiblingError extends Error {
  readonly code: string
  readonly path: string | undefined
  readonly hint: string | undefined
  readonly exitCode: number

  constructor (code: string, message: string, details: ErrorDetails = {}) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause })
    this.name = 'SiblingError'
    this.code = code
    this.path = details.path
    this.hint = details.hint
    this.exitCode = details.exitCode ?? 1
  }
}

/** Throws an errno-named error from inside the overlay. */
export function fail (code: string, path: string, message?: string): never {
  throw new SiblingError(code, message ?? `${code}: ${path}`, { path })
}

/** The errno name of anything thrown (Node fs errors, SiblingError), or undefined. */
export function errorCode (err: unknown): string | undefined {
  if (err !== null && typeof err === 'object' && 'code' in err) {
    const code = (err as { code: unknown }).code
    if (typeof code === 'string') return code
  }
  return undefined
}

/** True when `err` is an error with this errno name. */
export function isCode (err: unknown, code: string): boolean {
  return errorCode(err) === code
}
