/**
 * `siblingfs status`: the store at a glance: options, size, changes, host drift.
 */
import type { Argv, CommandModule } from 'yargs'
import { resolveHostAndStore } from '../../daemon/config.js'
import { storeStatus } from '../../tools/status.js'
import { formatSummary, printLine } from '../output.js'

interface Args { host: string, store?: string, json: boolean }

export const statusCommand: CommandModule<object, Args> = {
  command: 'status',
  describe: 'show a store: options, size, what changed, and siblings whose host original changed (drift)',
  builder: (y: Argv) => y
    .option('host', { type: 'string', default: '.', describe: 'the host tree (default: the current directory)' })
    .option('store', { type: 'string', describe: 'the store (default: the host\'s default store)' })
    .option('json', { type: 'boolean', default: false, describe: 'print JSON' }) as unknown as Argv<Args>,
  handler: (a) => {
    const { store } = resolveHostAndStore(a.host, a.store)
    const r = storeStatus(store)
    if (a.json) { printLine(JSON.stringify(r, null, 2)); return }
    printLine(`store:    ${r.store} (format ${r.version}; chunks of ${r.options.chunkSize} bytes; compression ${r.options.compress})`)
    printLine(`host:     ${r.host}`)
    printLine(`mounted:  ${r.mountedBy === null ? 'no' : `yes, by process ${r.mountedBy}`}`)
    printLine(`on disk:  ${(r.diskBytes / 1048576).toFixed(1)} MiB; ${r.chunkedFiles} chunked file(s)`)
    printLine(`changes:  ${formatSummary(r.summary)}`)
    if (r.drift.length === 0) printLine('drift:    none (every sibling\'s host original is as it was)')
    else {
      printLine(`drift:    ${r.drift.length} sibling(s) depend on host files that changed since:`)
      for (const d of r.drift) printLine(`  ${d.path} (from ${d.origin}, ${d.kind}${d.kind === 'chunked' ? ': unwritten chunks read as errors' : ': shows the new host bytes'})`)
    }
  }
}
