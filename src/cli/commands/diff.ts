/**
 * `siblingfs diff`: what the sandbox changed. Exits 1 when there are changes, like diff(1).
 */
import type { Argv, CommandModule } from 'yargs'
import { resolveHostAndStore } from '../../daemon/config.js'
import { SiblingError } from '../../errors.js'
import { readManifest } from '../../store/format.js'
import { diffStore, summarize } from '../../tools/diff.js'
import { formatChanges, formatSummary, printLine } from '../output.js'

interface Args {
  host: string
  store?: string
  json: boolean
}

export const diffCommand: CommandModule<object, Args> = {
  command: 'diff',
  describe: 'list what the sandbox changed (A added, M modified, m metadata, D deleted, R renamed, X replaced); exit 1 if anything did',
  builder: (y: Argv) => y
    .option('host', { type: 'string', default: '.', describe: 'the host tree (default: the current directory)' })
    .option('store', { type: 'string', describe: 'the store (default: the host\'s default store)' })
    .option('json', { type: 'boolean', default: false, describe: 'print JSON' }) as unknown as Argv<Args>,
  handler: (a) => {
    const { host, store } = resolveHostAndStore(a.host, a.store)
    if (readManifest(store) === undefined) {
      throw new SiblingError('SFS_NO_STORE', `there is no store at ${store}`, { hint: 'pass --store, or run something in the sandbox first', exitCode: 66 })
    }
    const changes = diffStore(host, store)
    if (a.json) printLine(JSON.stringify({ host, store, changes, summary: summarize(changes) }, null, 2))
    else {
      if (changes.length > 0) printLine(formatChanges(changes))
      printLine(formatSummary(summarize(changes)))
    }
    process.exitCode = changes.length > 0 ? 1 : 0
  }
}
