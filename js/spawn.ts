export function spawnWorker(workerUrl: string | URL | undefined, workerOptions: WorkerOptions): SharedWorker {
  return workerUrl
    ? new SharedWorker(workerUrl, workerOptions)
    : new SharedWorker(new URL('./worker.js', import.meta.url), /* @vite-ignore */ workerOptions);
}
