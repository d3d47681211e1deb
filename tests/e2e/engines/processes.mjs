// Crashing a browser for a test: SIGKILL to every process of it at once;
// and what its processes hold open. Shared by the engines; each says which
// command lines are its browser's.
import { execFile } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import { promisify } from 'node:util';

/** `/proc/<pid>/stat`'s fields after the command name, or null if gone. */
async function procStat(pid) {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return null;
  }
}

/** Running, as opposed to gone or a zombie waiting to be reaped. */
async function alive(pid) {
  const stat = await procStat(pid);
  return stat !== null && stat[0] !== 'Z' && stat[0] !== 'X';
}

/**
 * Every process of one browser: those whose command line (its arguments,
 * as a list) `isOurs` accepts, and everything in their process groups or
 * below them (helpers, content processes, a driver's browser binary).
 */
async function browserProcesses(isOurs) {
  const all = [];
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const stat = await procStat(name);
    if (!stat) continue;
    const cmdline = await readFile(`/proc/${name}/cmdline`, 'utf8').catch(() => '');
    const ours = cmdline !== '' && isOurs(cmdline.replace(/\0$/, '').split('\0'));
    all.push({ pid: Number(name), ppid: Number(stat[1]), pgid: Number(stat[2]), ours });
  }
  const self = all.find((p) => p.pid === process.pid);
  const pids = new Set(all.filter((p) => p.ours).map((p) => p.pid));
  // Drivers start the browser in a process group of its own; never this one's.
  const groups = new Set(all.filter((p) => p.ours && p.pgid !== self?.pgid).map((p) => p.pgid));
  for (let grew = true; grew; ) {
    grew = false;
    for (const p of all) {
      if (!pids.has(p.pid) && (groups.has(p.pgid) || pids.has(p.ppid))) {
        pids.add(p.pid);
        grew = true;
      }
    }
  }
  pids.delete(process.pid);
  return [...pids];
}

/**
 * The browser crashes: SIGKILL to every process of it at once (no unload,
 * no flush), resolving once all are gone.
 */
export async function killBrowser(isOurs, what) {
  const pids = await browserProcesses(isOurs);
  if (pids.length === 0) throw new Error(`no browser process found for ${what}`);
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch (e) {
      if (e.code !== 'ESRCH') throw e;
    }
  }
  const deadline = Date.now() + 10_000;
  while ((await Promise.all(pids.map(alive))).some((a) => a)) {
    if (Date.now() > deadline) throw new Error(`the browser of ${what} did not go`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** The TCP connections of one browser's processes (`ss -tnp` lines), for a report of what it was waiting on. */
export async function browserSockets(isOurs) {
  const pids = new Set(await browserProcesses(isOurs));
  const { stdout } = await promisify(execFile)('ss', ['-tnpH']);
  return stdout
    .split('\n')
    .filter((line) => [...line.matchAll(/pid=(\d+)/g)].some(([, pid]) => pids.has(Number(pid))))
    .join('\n');
}
