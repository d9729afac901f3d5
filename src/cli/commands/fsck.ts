/**
 * `siblingfs fsck STORE [--repair]`: check a store. Exit 0 when clean (or all fixed),
 * 1 when problems remain.
 */
import type { Argv, CommandModule } from 'yargs'
import { realPathOfMaybe } from '../../daemon/config.js'
import { fsckStore } from '../../tools/fsck.js'
import { printLine } from '../output.js'

interface Args { store: string, repair: boolean, json: boolean }

export const fsckCommand: CommandModule<object, Args> = {
  command: 'fsck <store>',
  describe: 'check a store (format, chunk maps, checksums, dangling siblings, host drift); --repair fixes what can be fixed without losing data',
  builder: (y: Argv) => y
    .positional('store', { type: 'string', demandOption: true, describe: 'the store directory' })
    .option('repair', { type: 'boolean', default: false, describe: 'finish or remove unfinished operations and dangling maps' })
    .option('json', { type: 'boolean', default: false, describe: 'print JSON' }) as unknown as Argv<Args>,
  handler: (a) => {
    const r = fsckStore(realPathOfMaybe(a.store), a.repair)
    const open = r.findings.filter(f => f.severity !== 'fixed')
    if (a.json) printLine(JSON.stringify(r, null, 2))
    else {
      printLine(`store ${r.store} (format ${r.version}, host ${r.host}): ${r.entries} entries, ${r.chunkedFiles} chunked files`)
      for (const f of r.findings) printLine(`${f.severity}: ${f.path}: ${f.message}`)
      printLine(open.length === 0 ? 'clean' : `${open.length} problem(s)`)
    }
    process.exitCode = open.length === 0 ? 0 : 1
  }
}
