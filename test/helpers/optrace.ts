/**
 * Preloaded into a daemon (NODE_OPTIONS=--require) by tests that check which requests reach
 * JavaScript: appends the name of every operation the FUSE boundary runs (the
 * `siblingfs:op` diagnostics channel, src/log.ts) to the file named by SIBLINGFS_OPLOG.
 */
import diagnostics from 'node:diagnostics_channel'
import fs from 'node:fs'

const out = process.env.SIBLINGFS_OPLOG
if (out !== undefined && out !== '') {
  diagnostics.channel('siblingfs:op').subscribe((m) => {
    const { op, path } = m as { op: string, path: string | null }
    fs.appendFileSync(out, `${op} ${path ?? '-'}\n`)
  })
}
