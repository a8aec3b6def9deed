/**
 * What Node lacks for the client, the way a test wires it: a cookie-keeping fetch (the
 * BFF keeps the session in a cookie; Node's fetch has no jar) and the `eventsource`
 * package, wrapped to count constructions and to send the same cookies.
 */
import { EventSource } from "eventsource";
import type { EventSourceConstructorLike, EventSourceInitLike } from "../src/index.js";

export type NodeFetch = typeof globalThis.fetch;

/** A fetch that remembers the cookies the server sets and sends them back. */
export function cookieFetch(): NodeFetch {
  const jar = new Map<string, string>();
  return async (input, init) => {
    const headers = new Headers(init?.headers);
    if (jar.size > 0) {
      headers.set("Cookie", [...jar].map(([name, value]) => `${name}=${value}`).join("; "));
    }
    const response = await fetch(input, { ...init, headers });
    for (const cookie of response.headers.getSetCookie()) {
      const pair = cookie.split(";", 1)[0] ?? "";
      const eq = pair.indexOf("=");
      if (eq > 0) jar.set(pair.slice(0, eq).trim(), pair.slice(eq + 1).trim());
    }
    return response;
  };
}

export interface CountingEventSource {
  readonly EventSource: EventSourceConstructorLike;
  /** URLs of every EventSource constructed, in order. */
  readonly constructed: string[];
}

/** The `eventsource` package's EventSource, counting constructions, using `fetchImpl`. */
export function countingEventSource(fetchImpl: NodeFetch): CountingEventSource {
  const constructed: string[] = [];
  class Counting extends EventSource {
    constructor(url: string, init?: EventSourceInitLike) {
      super(url, { ...init, fetch: fetchImpl });
      constructed.push(url);
    }
  }
  return { EventSource: Counting, constructed };
}
