import { ExportError } from "./errors.js";
import type { ErrorBody } from "./types.js";

/** The part of a fetch Response the client reads. */
export interface FetchResponseLike {
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
export async function requestJSON(
  fetchImpl: FetchLike,
  url: string,
  init: FetchInitLike,
): Promise<unknown> {
  let response: FetchResponseLike;
  try {
    response = await fetchImpl(url, init);
  } catch (cause) {
    if (init.signal?.aborted) {
      throw new ExportError("ABORTED", `${init.method} ${url} aborted`, { status: 0, cause });
    }
    throw new ExportError("NETWORK_ERROR", `${init.method} ${url} failed: ${String(cause)}`, {
      status: 0,
      cause,
    });
  }

  // 204 No Content (e.g. DELETE of a finished export) is a success without a body.
  if (response.status === 204) return undefined;
  const text = await response.text();
  const body = parseJSON(text);
  if (!response.ok) {
    const error = errorBodyOf(body);
    if (error) {
      throw new ExportError(error.code, error.message, { status: response.status });
    }
    throw new ExportError(
      "BAD_RESPONSE",
      `${init.method} ${url}: HTTP ${response.status} ${response.statusText}`.trim(),
      { status: response.status },
    );
  }
  if (body === undefined) {
    throw new ExportError("BAD_RESPONSE", `${init.method} ${url}: response is not JSON`, {
      status: response.status,
    });
  }
  return body;
}

export function parseJSON(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

function errorBodyOf(body: unknown): ErrorBody | undefined {
  if (!isRecord(body) || !isRecord(body["error"])) return undefined;
  const { code, message } = body["error"];
  if (typeof code !== "string") return undefined;
  return { code, message: typeof message === "string" ? message : code };
}

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
