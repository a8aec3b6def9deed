/**
 * `@exportstream/client/node`: what a Node process needs to be one browser of the BFF.
 * The BFF keeps the session in a cookie; Node's fetch keeps no cookies and the
 * `eventsource` package sends none, so without this every stream lands in a new, empty
 * session.
 */
import type { EventSourceLike } from "./stream.js";

/** The fetch the session wraps, and hands to the EventSource: `globalThis.fetch`'s shape. */
export type SessionFetch = (input: string | URL, init?: RequestInit) => Promise<Response>;

/**
 * An EventSource class that takes a `fetch` in its init, as the `eventsource` package
 * (v3, v4) does.
 */
export type FetchingEventSourceClass = new (
  url: string,
  init?: { withCredentials?: boolean; fetch?: SessionFetch },
) => EventSourceLike;

export interface NodeSessionOptions {
  /** Origin of the BFF, e.g. `http://localhost:8080`: the only origin the cookie goes to. */
  readonly baseUrl: string;
  /** The EventSource class to carry the cookie: `EventSource` from the `eventsource` package. */
  readonly EventSource: FetchingEventSourceClass;
  /** The fetch underneath; default `globalThis.fetch`. */
  readonly fetch?: SessionFetch;
}

/** Spread into `createExportClient`: the same session for every request and stream. */
export interface NodeSession {
  readonly baseUrl: string;
  readonly fetch: SessionFetch;
  readonly EventSource: FetchingEventSourceClass;
}

/**
 * A session for one Node client: a cookie jar that keeps the BFF's own `Set-Cookie`s
 * (those of `baseUrl`'s origin only) and sends them back, shared by the returned `fetch`
 * and by every stream the returned `EventSource` class opens.
 *
 * ```ts
 * const client = createExportClient({ mode: "multiplex", ...createNodeSession({ baseUrl, EventSource }) });
 * ```
 */
export function createNodeSession(options: NodeSessionOptions): NodeSession {
  const baseUrl = options.baseUrl.replace(/\/+$/, "");
  const origin = new URL(baseUrl).origin;
  const jar = new Map<string, string>();
  const inner = options.fetch ?? ((input, init) => globalThis.fetch(input, init));
  const fetch: SessionFetch = async (input, init) => {
    const own = new URL(String(input)).origin === origin;
    const headers = new Headers(init?.headers);
    if (own && jar.size > 0) headers.set("Cookie", [...jar].map(([name, value]) => `${name}=${value}`).join("; "));
    const response = await inner(input, { ...init, headers });
    if (own) keep(jar, response.headers.getSetCookie());
    return response;
  };
  const Base = options.EventSource;
  class SessionEventSource extends Base {
    constructor(url: string, init?: { withCredentials?: boolean; fetch?: SessionFetch }) {
      super(url, { ...init, fetch });
    }
  }
  return { baseUrl, fetch, EventSource: SessionEventSource };
}

/** Stores each `name=value` of the Set-Cookie lines; an expired or emptied one is dropped. */
function keep(jar: Map<string, string>, setCookies: readonly string[]): void {
  for (const line of setCookies) {
    const [pair = "", ...attributes] = line.split(";");
    const eq = pair.indexOf("=");
    if (eq <= 0) continue;
    const name = pair.slice(0, eq).trim();
    const value = pair.slice(eq + 1).trim();
    if (value === "" || attributes.some(isExpiry)) jar.delete(name);
    else jar.set(name, value);
  }
}

/** `Max-Age=0` (or negative), or `Expires` in the past. */
function isExpiry(attribute: string): boolean {
  const [key = "", value = ""] = attribute.split("=", 2).map((part) => part.trim());
  if (/^max-age$/i.test(key)) return Number(value) <= 0;
  if (/^expires$/i.test(key)) return Date.parse(value) <= Date.now();
  return false;
}
