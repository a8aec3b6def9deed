import { ExportError } from "./errors.js";
import { isJobShape, isRecord, parseJSON } from "./json.js";
import type { ErrorBody, ExportRequest, Job } from "./types.js";

/** The part of a fetch Response the client reads. */
interface FetchResponseLike {
  readonly ok: boolean;
  readonly status: number;
  readonly statusText: string;
  text(): Promise<string>;
}

/** The part of RequestInit the client sets. */
export interface FetchInitLike {
  method: string;
  headers: Record<string, string>;
  body?: string;
  signal?: AbortSignal;
  credentials?: "omit" | "same-origin" | "include";
}

/** A `fetch`-compatible function: `globalThis.fetch`, undici's, a test double… */
export type FetchLike = (url: string, init: FetchInitLike) => Promise<FetchResponseLike>;

/**
 * Sends one JSON request and returns the parsed JSON body. Every failure becomes an
 * {@link ExportError}: non-2xx responses carry the server's `{"error":{code,message}}`.
 * A 204 resolves with `undefined`.
 */
async function requestJSON(
  fetchImpl: FetchLike,
  url: string,
  init: FetchInitLike,
): Promise<unknown> {
  let response: FetchResponseLike;
  try {
    response = await fetchImpl(url, init);
  } catch (cause) {
    if (init.signal?.aborted) {
      throw new ExportError("ABORTED", `${init.method} ${url} aborted`, { cause });
    }
    throw new ExportError("NETWORK_ERROR", `${init.method} ${url} failed: ${String(cause)}`, { cause });
  }

  // 204 No Content (e.g. DELETE of a finished export) is a success without a body.
  if (response.status === 204) return undefined;
  const text = await response.text();
  const body = parseJSON(text);
  if (!response.ok) {
    const error = errorBodyOf(body);
    if (error) {
      throw new ExportError(error.code, error.message, { httpStatus: response.status });
    }
    throw new ExportError(
      "BAD_RESPONSE",
      `${init.method} ${url}: HTTP ${response.status} ${response.statusText}`.trim(),
      { httpStatus: response.status },
    );
  }
  if (body === undefined) {
    throw new ExportError("BAD_RESPONSE", `${init.method} ${url}: response is not JSON`, { httpStatus: response.status });
  }
  return body;
}

function errorBodyOf(body: unknown): ErrorBody | undefined {
  if (!isRecord(body) || !isRecord(body["error"])) return undefined;
  const { code, message } = body["error"];
  if (typeof code !== "string") return undefined;
  return { code, message: typeof message === "string" ? message : code };
}

export interface RequestOptions {
  readonly signal?: AbortSignal;
}

/** Where the BFF is and how to reach it. */
interface ApiOptions {
  /** Origin (and optional path prefix) of the BFF, without a trailing slash. */
  readonly baseUrl: string;
  readonly credentials: "omit" | "same-origin" | "include";
  readonly fetch: FetchLike;
}

/**
 * The BFF's JSON endpoints under `{baseUrl}/api/exports`: every answer is checked to be
 * a job (or a list of them) before a caller sees it.
 */
export class ExportsApi {
  readonly #options: ApiOptions;
  readonly #exportsUrl: string;

  constructor(options: ApiOptions) {
    this.#options = options;
    this.#exportsUrl = `${options.baseUrl}/api/exports`;
  }

  /** `POST /api/session`: a new session (cookie) for this browser, in place of any. */
  async newSession(options: RequestOptions | undefined): Promise<void> {
    await requestJSON(this.#options.fetch, `${this.#options.baseUrl}/api/session`, this.#init("POST", options));
  }

  /**
   * `GET` of the export `code` (or of the list): the `SESSION_EXPIRED` error the BFF
   * answers it with, or undefined for any other answer.
   */
  async sessionExpired(code?: string): Promise<ExportError | undefined> {
    const url = code === undefined ? this.#exportsUrl : this.exportUrl(code);
    try {
      await requestJSON(this.#options.fetch, url, this.#init("GET", undefined));
      return undefined;
    } catch (error) {
      return error instanceof ExportError && error.code === "SESSION_EXPIRED" ? error : undefined;
    }
  }

  /** `POST /api/exports`. */
  create(request: ExportRequest, options: RequestOptions | undefined): Promise<Job> {
    const init = this.#init("POST", options);
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(request);
    return this.#job(this.#exportsUrl, init);
  }

  /** `GET /api/exports/{code}`. */
  get(code: string, options: RequestOptions | undefined): Promise<Job> {
    return this.#job(this.exportUrl(code), this.#init("GET", options));
  }

  /** `GET /api/exports`: newest first. */
  async list(options: RequestOptions | undefined): Promise<Job[]> {
    const body = await requestJSON(this.#options.fetch, this.#exportsUrl, this.#init("GET", options));
    const exports = isRecord(body) ? body["exports"] : undefined;
    if (!Array.isArray(exports) || !exports.every(isJobShape)) {
      throw new ExportError("BAD_RESPONSE", `GET ${this.#exportsUrl}: not a list of exports`, { httpStatus: 200 });
    }
    return exports as Job[];
  }

  /** `DELETE /api/exports/{code}`: the CANCELLED job, or undefined (204: it was deleted). */
  async delete(code: string, options: RequestOptions | undefined): Promise<Job | undefined> {
    const url = this.exportUrl(code);
    const body = await requestJSON(this.#options.fetch, url, this.#init("DELETE", options));
    if (body === undefined) return undefined;
    if (!isJobShape(body)) throw new ExportError("BAD_RESPONSE", `DELETE ${url}: not a job`, { httpStatus: 200 });
    return body as Job;
  }

  exportUrl(code: string): string {
    return `${this.#exportsUrl}/${encodeURIComponent(code)}`;
  }

  /** The URL of a COMPLETED job's file: the job's own if absolute, else on the BFF. */
  fileUrl(job: Job): string {
    if (!job.file) {
      throw new ExportError("NOT_READY", `export ${job.code} has no file (${job.status})`, { jobStatus: job.status, job });
    }
    const { url } = job.file;
    return /^[a-z][a-z\d+.-]*:/i.test(url) ? url : `${this.#options.baseUrl}${url}`;
  }

  #init(method: string, options: RequestOptions | undefined): FetchInitLike {
    const init: FetchInitLike = { method, headers: { Accept: "application/json" }, credentials: this.#options.credentials };
    if (options?.signal) init.signal = options.signal;
    return init;
  }

  async #job(url: string, init: FetchInitLike): Promise<Job> {
    const body = await requestJSON(this.#options.fetch, url, init);
    if (!isJobShape(body)) throw new ExportError("BAD_RESPONSE", `${init.method} ${url}: not a job`, { httpStatus: 200 });
    return body as Job;
  }
}

/**
 * The BFF creates the session (its cookie) on the first POST. Cookie-less POSTs sent at
 * once would each get a session of their own, so until one POST through this gate has
 * succeeded, the next ones wait for the one under way.
 */
export class SessionGate {
  #established = false;
  #first: Promise<unknown> | undefined;

  async run<T>(post: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    if (this.#established) return post();
    if (this.#first) {
      // The wait for the first POST honours the caller's signal too.
      await Promise.race([this.#first.catch(() => {}), abortedPromise(signal)]);
      return post();
    }
    const first = post();
    this.#first = first;
    try {
      const result = await first;
      this.#established = true;
      return result;
    } finally {
      this.#first = undefined;
    }
  }
}

/**
 * Rejects with `ABORTED` when `signal` aborts (never settles without one). The listener
 * stays until then: a gate's wait is one POST long.
 */
function abortedPromise(signal: AbortSignal | undefined): Promise<never> {
  return new Promise<never>((_resolve, reject) => {
    if (!signal) return;
    const abort = (): void => reject(new ExportError("ABORTED", "request aborted", { cause: signal.reason }));
    if (signal.aborted) abort();
    else signal.addEventListener("abort", abort, { once: true });
  });
}
