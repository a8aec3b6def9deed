// @vitest-environment jsdom
/**
 * The README's recipes (client/recipes/*.tsx, the very files the README shows) with the
 * real @tanstack/react-query and swr, against the real BFF and backend: each shows the
 * export live up to COMPLETED, and lets go of its stream when it unmounts.
 */
import { QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { cleanup, render, screen, waitFor } from "@testing-library/react";
import { createElement, StrictMode } from "react";
import type { ReactNode } from "react";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { createExportClient } from "@exportstream/client";
import type { ExportClient, FetchLike } from "@exportstream/client";
import { ExportClientProvider } from "@exportstream/client/react";
import { ExportStatusSWR } from "../recipes/swr.js";
import { ExportStatusQuery } from "../recipes/tanstack-query.js";
import { cookieFetch, countingEventSource } from "./fakes.js";
import { missingPrerequisites, prerequisites, startServers } from "./servers.js";
import type { Servers } from "./servers.js";

const h = createElement;
const missing = prerequisites("recipe tests (real backend + BFF)", missingPrerequisites());

describe.skipIf(missing !== undefined)("recipes against the real BFF", () => {
  let servers: Servers;

  beforeAll(async () => {
    servers = await startServers();
  });

  afterAll(async () => {
    await servers?.stop();
  });

  afterEach(cleanup);

  function newClient(mode: "per-job" | "multiplex"): ExportClient {
    const fetch = cookieFetch();
    return createExportClient({ baseUrl: servers.bffUrl, mode, fetch: fetch as FetchLike, EventSource: countingEventSource(fetch).EventSource });
  }

  /** Renders `view` for a fresh export; waits for a live percentage, then COMPLETED 100%. */
  async function showsCompleted(client: ExportClient, view: (code: string) => ReactNode, wrap: (child: ReactNode) => ReactNode): Promise<void> {
    const { code } = await client.start({ rows: 3000, durationMs: 1500 });
    const { unmount } = render(h(StrictMode, null, h(ExportClientProvider, { client }, wrap(view(code)))));
    const text = () => screen.getByRole("paragraph").textContent ?? "";
    await waitFor(() => expect(text()).toMatch(/^IN_PROGRESS \d+%$/), { timeout: 15_000, interval: 20 });
    await waitFor(() => expect(text()).toBe("COMPLETED 100%"), { timeout: 15_000 });
    unmount();
  }

  /** Renders `view` for a long export; once it runs, unmounts: the client's stream must close. */
  async function letsGo(client: ExportClient, view: (code: string) => ReactNode, wrap: (child: ReactNode) => ReactNode): Promise<void> {
    const { code } = await client.start({ rows: 100_000, durationMs: 20_000 });
    const { unmount } = render(h(ExportClientProvider, { client }, wrap(view(code))));
    await waitFor(() => expect(screen.getByRole("paragraph").textContent).toMatch(/^IN_PROGRESS \d+%$/), { timeout: 15_000, interval: 20 });
    expect(client.stats()).toMatchObject({ subscribed: [code], connections: 1 });
    unmount();
    await waitFor(() => expect(client.stats()).toMatchObject({ subscribed: [], connections: 0 }));
    await client.cancel(code);
  }

  it.each(["per-job", "multiplex"] as const)("TanStack Query (streamedQuery over client.events()), %s", async (mode) => {
    const queryClient = new QueryClient();
    await showsCompleted(newClient(mode), (code) => h(ExportStatusQuery, { code }), (child) => h(QueryClientProvider, { client: queryClient }, child));
    queryClient.clear();
  });

  it.each(["per-job", "multiplex"] as const)("SWR (useSWRSubscription over client.subscribe()), %s", async (mode) => {
    // SWR's default cache: each test's export has a code (key) of its own.
    await showsCompleted(newClient(mode), (code) => h(ExportStatusSWR, { code }), (child) => child);
  });

  it("TanStack Query: unmounting the last component closes the stream (its signal aborts)", async () => {
    const queryClient = new QueryClient();
    await letsGo(newClient("per-job"), (code) => h(ExportStatusQuery, { code }), (child) => h(QueryClientProvider, { client: queryClient }, child));
    queryClient.clear();
  });

  it("SWR: unmounting the last component closes the stream (SWR calls the unsubscribe)", async () => {
    await letsGo(newClient("per-job"), (code) => h(ExportStatusSWR, { code }), (child) => child);
  });

  it("TanStack Query shows a failed stream as the query's error", async () => {
    const queryClient = new QueryClient();
    const client = newClient("per-job");
    render(h(ExportClientProvider, { client }, h(QueryClientProvider, { client: queryClient }, h(ExportStatusQuery, { code: "00000000-0000-4000-8000-000000000000" }))));
    await waitFor(() => expect(screen.getByRole("paragraph").textContent).toMatch(/^Failed: /), { timeout: 15_000 });
    queryClient.clear();
  });
});
