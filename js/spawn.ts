export function spawnWorker(workerUrl: string | URL | undefined, workerOptions: WorkerOptions): SharedWorker {
  return workerUrl
    ? new SharedWorker(workerUrl, workerOptions)
    : new SharedWorker(new URL('./worker.js', import.meta.url), /* @vite-ignore */ workerOptions);
}

export function spawnDedicated(workerUrl: string | URL | undefined, workerOptions: WorkerOptions): Worker {
  return workerUrl
    ? new Worker(workerUrl, workerOptions)
    : new Worker(new URL('./worker.js', import.meta.url), /* @vite-ignore */ workerOptions);
}
