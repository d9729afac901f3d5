/**
 * What the sandbox changed: the store compared with the host, as data.
 *
 * Contract: `diffStore` walks STORE/upper (read-only; safe while mounted, though a live
 * sandbox may change under it) and returns one Change per merged-view path that differs
 * from the host, sorted by path. It reads only the store and stats the host; it never
 * reads file contents.
 * Kinds: added (no host entry at that path), modified (the bytes are the sandbox's), meta
 * (same bytes, other mode/owner/times/xattrs), deleted (a whiteout over a host entry),
 * renamed (shows a host entry from another path; `from` says which), replaced (a new
 * directory that hides the host's at that path).
 */
import fs from 'node:fs'
import path from 'node:path'
import { XATTR, parseOrigin, storePaths } from '../store/format.js'
import { lgetxattr } from '../sys/native.js'

export type ChangeKind = 'added' | 'modified' | 'meta' | 'deleted' | 'renamed' | 'replaced'
export type EntryType = 'file' | 'dir' | 'symlink' | 'other'

export interface Change {
  /** Merged-view path, '/a/b'. */
  path: string
  kind: ChangeKind
  type: EntryType
  /** For renamed: the host path it came from. */
  from?: string
}

export interface DiffSummary {
  added: number
  modified: number
  deleted: number
  meta: number
  renamed: number
  replaced: number
}

function typeOf (st: fs.Stats): EntryType {
  if (st.isFile()) return 'file'
  if (st.isDirectory()) return 'dir'
  if (st.isSymbolicLink()) return 'symlink'
  return 'other'
}

function lstatOrNull (p: string): fs.Stats | null {
  return fs.lstatSync(p, { throwIfNoEntry: false }) ?? null
}

function metaDiffers (a: fs.Stats, b: fs.Stats): boolean {
  return a.mode !== b.mode || a.uid !== b.uid || a.gid !== b.gid || (!a.isSymbolicLink() && a.mtimeMs !== b.mtimeMs)
}

export function diffStore (host: string, store: string): Change[] {
  const out: Change[] = []
  walk(storePaths(store).upper, '', host, '', out)
  out.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0))
  return out
}

/**
 * Walks upper dir `up` (merged path `rel`), whose host side is host-relative `hostRel`
 * (null: none merged here).
 */
function walk (up: string, rel: string, host: string, hostRel: string | null, out: Change[]): void {
  for (const name of fs.readdirSync(up)) {
    const p = path.join(up, name)
    const st = fs.lstatSync(p)
    const mergedPath = rel + '/' + name
    const natural = hostRel === null ? null : (hostRel === '' ? name : hostRel + '/' + name)
    const hst = natural === null ? null : lstatOrNull(path.join(host, natural))
    if (st.isFile() && st.size === 0 && lgetxattr(p, XATTR.whiteout) !== null) {
      if (hst !== null) out.push({ path: mergedPath, kind: 'deleted', type: typeOf(hst) })
      continue
    }
    const origin = st.isSymbolicLink() ? null : parseOrigin(lgetxattr(p, XATTR.origin))
    if (st.isDirectory()) {
      const redirect = lgetxattr(p, XATTR.redirect)
      if (redirect !== null) {
        const from = redirect.toString('utf8')
        if (from !== natural) out.push({ path: mergedPath, kind: 'renamed', type: 'dir', from: '/' + from })
        walk(p, mergedPath, host, from, out)
      } else if (lgetxattr(p, XATTR.opaque) !== null) {
        out.push({ path: mergedPath, kind: hst !== null ? 'replaced' : 'added', type: 'dir' })
        walk(p, mergedPath, host, null, out)
      } else if (hst !== null && hst.isDirectory()) {
        if (st.mode !== hst.mode || st.uid !== hst.uid || st.gid !== hst.gid) {
          out.push({ path: mergedPath, kind: 'meta', type: 'dir' })
        }
        walk(p, mergedPath, host, natural, out)
      } else {
        out.push({ path: mergedPath, kind: hst !== null ? 'replaced' : 'added', type: 'dir' })
        walk(p, mergedPath, host, null, out)
      }
      continue
    }
    const type = typeOf(st)
    if (origin !== null && origin.path !== natural) {
      out.push({ path: mergedPath, kind: 'renamed', type, from: '/' + origin.path })
      if (origin.data !== 'host') out.push({ path: mergedPath, kind: 'modified', type })
    } else if (origin !== null) {
      if (origin.data !== 'host') out.push({ path: mergedPath, kind: 'modified', type })
      else if (hst === null || metaDiffers(st, hst)) out.push({ path: mergedPath, kind: 'meta', type })
    } else if (hst !== null && st.isSymbolicLink() && hst.isSymbolicLink() && fs.readlinkSync(p) === fs.readlinkSync(path.join(host, natural as string))) {
      out.push({ path: mergedPath, kind: 'meta', type }) // a symlink copied up for chown or utimens
    } else {
      out.push({ path: mergedPath, kind: hst !== null ? 'modified' : 'added', type })
    }
  }
}

export function summarize (changes: Change[]): DiffSummary {
  const s: DiffSummary = { added: 0, modified: 0, deleted: 0, meta: 0, renamed: 0, replaced: 0 }
  for (const c of changes) s[c.kind]++
  return s
}
