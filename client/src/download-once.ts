/**
 * `downloadOnce`'s memory, a chunk of its own: loaded by the first call.
 */
import type { LockManagerLike } from "./crosstab.js";

/** The part of `localStorage` {@link DownloadLog} uses. */
export interface StorageLike {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
}

/** How many codes the browser-wide marker keeps; the oldest go first. */
const DOWNLOADED_LIMIT = 200;

/**
 * Which exports were downloaded, for `downloadOnce`: in `localStorage`, read and written
 * under one Web Lock, so two tabs (or a tab and its reload) cannot both download a
 * code; without them, in this instance only.
 */
export class DownloadLog {
  readonly #done = new Set<string>();
  readonly #key: string;
  readonly #locks: LockManagerLike | undefined;
  readonly #storage: StorageLike | undefined;

  /** `locks`: the browser's (`webLocks()`), passed in so that this chunk imports no code. */
  constructor(key: string, options: { locks: LockManagerLike | undefined; storage?: StorageLike | undefined }) {
    this.#key = `exportstream:downloaded:${key}`;
    this.#locks = options.locks;
    this.#storage = "storage" in options ? options.storage : localStorageOrUndefined();
  }

  /** Calls `download` unless `code` was downloaded before; true when it did. */
  async once(code: string, download: () => void): Promise<boolean> {
    // Claimed at once, so a second call in the same tick (StrictMode) sees it.
    if (this.#done.has(code)) return false;
    this.#done.add(code);
    const locks = this.#locks;
    const storage = this.#storage;
    try {
      if (!locks || !storage) {
        download();
        return true;
      }
      return await locks.request(this.#key, {}, () => Promise.resolve(this.#mark(storage, code, download)));
    } catch (error) {
      this.#done.delete(code);
      throw error;
    }
  }

  #mark(storage: StorageLike, code: string, download: () => void): boolean {
    const codes = this.#read(storage);
    if (codes.includes(code)) return false;
    download();
    codes.push(code);
    try {
      storage.setItem(this.#key, JSON.stringify(codes.slice(-DOWNLOADED_LIMIT)));
    } catch {
      // Storage full or refused: this instance still remembers it.
    }
    return true;
  }

  #read(storage: StorageLike): string[] {
    try {
      const value: unknown = JSON.parse(storage.getItem(this.#key) ?? "[]");
      return Array.isArray(value) ? value.filter((each): each is string => typeof each === "string") : [];
    } catch {
      return [];
    }
  }
}

function localStorageOrUndefined(): StorageLike | undefined {
  try {
    // Reading it throws where storage is refused (sandboxed frames, some privacy modes).
    return (globalThis as { localStorage?: StorageLike }).localStorage;
  } catch {
    return undefined;
  }
}
