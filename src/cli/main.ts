#!/usr/bin/env node
/**
 * The command line: yargs wiring, and errors -> message, hint and exit status.
 *
 * Exit statuses: 0 success; 1 `diff` found changes, or a failure without a better code;
 * 64 bad usage; 66 a missing input; 69 a missing system dependency (libfuse, /dev/fuse,
 * bwrap); 70 mounting failed; 73 the store cannot be made or used; `run` exits with
 * CMD's status.
 */
import { createRequire } from 'node:module'
import type yargsType from 'yargs'
import { SiblingError } from '../errors.js'
import { diffCommand } from './commands/diff.js'
import { fsckCommand } from './commands/fsck.js'
import { statusCommand } from './commands/status.js'
import { mountCommand } from './commands/mount.js'
import { runCommand } from './commands/run.js'
import { printErrorLine } from './output.js'

// yargs 18 is an ES module; Node 20 loads it with require() (it exports the function itself
// as 'module.exports'; `default` is there for older loaders).
const yargsModule = createRequire(__filename)('yargs') as typeof yargsType | { default: typeof yargsType }
const yargs = typeof yargsModule === 'function' ? yargsModule : yargsModule.default

function report (err: unknown): number {
  if (err instanceof SiblingError) {
    printErrorLine(`siblingfs: ${err.message}`)
    if (err.hint !== undefined) printErrorLine(`  hint: ${err.hint}`)
    return err.exitCode
  }
  const msg = err instanceof Error ? (process.env.SIBLINGFS_DEBUG !== undefined ? err.stack ?? err.message : err.message) : String(err)
  printErrorLine(`siblingfs: ${msg}`)
  return 1
}

export async function main (argv: string[]): Promise<void> {
  const cli = yargs(argv)
    .scriptName('siblingfs')
    .usage('$0 <command> [options]\n\nA writable, sandboxed view of a directory tree: programs change what they like, the host tree never changes.')
    .command(mountCommand)
    .command(runCommand)
    .command(diffCommand)
    .command(statusCommand)
    .command(fsckCommand)
    .demandCommand(1, 'name a command: mount, run, diff, status or fsck')
    .strict()
    .help()
    .alias('h', 'help')
    .version()
    .wrap(Math.min(100, process.stdout.columns ?? 100))
    .fail((msg, err) => {
      if (err instanceof SiblingError) throw err
      // A command that failed: yargs passes no message, only the error.
      if ((msg === null || msg === undefined) && err !== undefined && err !== null) throw err
      // yargs' own validation and .check() failures: usage errors, on one line.
      const text = (msg ?? 'bad usage').replace(/\s*\n\s*/g, ' ')
      throw new SiblingError('SFS_USAGE', text, { hint: 'see `siblingfs --help`', exitCode: 64 })
    })
  try {
    await cli.parseAsync()
  } catch (err) {
    process.exitCode = report(err)
  }
  // fuse-native can keep the event loop alive after its mount is gone (an unmount by
  // someone else); the command is over, so the process ends here, once output is flushed.
  const code = typeof process.exitCode === 'number' ? process.exitCode : 0
  process.stdout.write('', () => process.stderr.write('', () => process.exit(code)))
}

if (require.main === module) void main(process.argv.slice(2))
