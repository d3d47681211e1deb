#!/usr/bin/env node
// Runs chosen browser test files N times while every core is kept busy, and
// prints how often each passed: timing bugs that an idle machine hides show
// up under load, as on a shared CI machine. A test that fails even once here
// has a bug (in the code or in what it waits for); it never gets a retry.
//
//   node scripts/under-load.mjs [--runs N] [--burners K] [--pattern NAME] FILE...
//   node scripts/under-load.mjs --runs 20 tests/e2e/sync_restart.test.mjs
//   node scripts/under-load.mjs --runs 3 tests/e2e/          (the whole suite)
//
// Needs a build (scripts/build.sh, scripts/site.sh, the release server). The
// burners are busy loops in child processes, one per core unless --burners
// says otherwise; they are stopped when the runs end, fail or are interrupted.
// Each run's output goes to target/under-load/<run>.log; failures are echoed.
import { spawn } from 'node:child_process';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
let runs = 5;
let burnerCount = availableParallelism();
let pattern;
const files = [];
for (let i = 0; i < args.length; i++) {
  const arg = args[i];
  if (arg === '--runs') runs = Number(args[++i]);
  else if (arg === '--burners') burnerCount = Number(args[++i]);
  else if (arg === '--pattern') pattern = args[++i];
  else if (arg.startsWith('--')) throw new Error(`unknown option ${arg}`);
  else files.push(arg);
}
if (files.length === 0 || !(runs > 0) || !(burnerCount >= 0)) {
  console.error('usage: node scripts/under-load.mjs [--runs N] [--burners K] [--pattern NAME] FILE...');
  process.exit(2);
}

const burners = Array.from({ length: burnerCount }, () =>
  spawn(process.execPath, ['-e', 'for (;;) {}'], { stdio: 'ignore' }),
);
const stopBurners = () => burners.forEach((b) => b.kill('SIGKILL'));
process.on('exit', stopBurners);
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => process.exit(130));

const logDir = join(root, 'target', 'under-load');
await rm(logDir, { recursive: true, force: true });
await mkdir(logDir, { recursive: true });

/** One `node --test` run; resolves to its per-test outcomes and output. */
function runOnce() {
  const testArgs = ['--test', '--test-timeout=900000', '--test-reporter=tap'];
  if (pattern) testArgs.push(`--test-name-pattern=${pattern}`);
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [...testArgs, ...files], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (c) => (output += c));
    child.stderr.on('data', (c) => (output += c));
    child.on('exit', (code) => resolve({ code, output, tests: outcomes(output) }));
  });
}

/** `ok N - name` / `not ok N - name` lines of the TAP output: tests, not
 * files (one file's tests are top-level, several files' are nested), and
 * not the ones skipped by --pattern. */
function outcomes(tap) {
  const tests = [];
  for (const line of tap.split('\n')) {
    const m = line.match(/^\s*(not ok|ok) \d+ - (.*)$/);
    if (!m || /\.test\.mjs$/.test(m[2]) || / # SKIP\b/.test(m[2])) continue;
    tests.push({ name: m[2].replace(/ # .*$/, ''), ok: m[1] === 'ok' });
  }
  return tests;
}

const tally = new Map();
let failedRuns = 0;
const started = Date.now();
console.log(`under load: ${burnerCount} busy loop(s), ${runs} run(s) of ${files.join(' ')}${pattern ? ` (tests matching ${pattern})` : ''}`);
for (let run = 1; run <= runs; run++) {
  const t0 = Date.now();
  const { code, output, tests } = await runOnce();
  await writeFile(join(logDir, `${run}.log`), output);
  for (const { name, ok } of tests) {
    const t = tally.get(name) ?? { passed: 0, failed: 0 };
    t[ok ? 'passed' : 'failed']++;
    tally.set(name, t);
  }
  const failed = tests.filter((t) => !t.ok).map((t) => t.name);
  if (code !== 0) failedRuns++;
  const seconds = ((Date.now() - t0) / 1000).toFixed(0);
  console.log(
    `run ${run}/${runs}: ${code === 0 ? 'pass' : 'FAIL'} (${tests.length - failed.length}/${tests.length} tests, ${seconds} s)` +
      (failed.length ? `; failed: ${failed.join('; ')} — see target/under-load/${run}.log` : ''),
  );
  if (code !== 0 && tests.length === 0) console.log(output.slice(-3000));
}
stopBurners();

console.log('\npasses per test:');
for (const [name, { passed, failed }] of tally) {
  console.log(`  ${String(passed).padStart(3)}/${passed + failed}  ${name}`);
}
const minutes = ((Date.now() - started) / 60000).toFixed(1);
console.log(`\n${runs - failedRuns} of ${runs} runs passed in ${minutes} min`);
process.exit(failedRuns === 0 ? 0 : 1);
