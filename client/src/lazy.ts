/**
 * Starts something whose code is in a chunk of its own (a dynamic `import()`, which
 * bundlers split out of the app's entry chunk), and returns at once the function that
 * stops it: a stop before the chunk has loaded means it never starts. `failed` hears
 * of a chunk that cannot load (offline, or a deploy that removed it) unless stopped.
 */
export function startLoaded<M>(load: () => Promise<M>, start: (module: M) => () => void, failed: (error: unknown) => void): () => void {
  let stop: (() => void) | undefined;
  let stopped = false;
  load().then(
    (module) => {
      if (!stopped) stop = start(module);
    },
    (error: unknown) => {
      if (!stopped) failed(error);
    },
  );
  return () => {
    stopped = true;
    stop?.();
  };
}
