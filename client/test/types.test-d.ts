import { EventSource as NodeEventSource } from "eventsource";
import { describe, expectTypeOf, it } from "vitest";
import * as api from "../src/index.js";
import { createExportClient, ExportError, isTerminalStatus } from "../src/index.js";
import type {
  ClientErrorCode,
  ConnectionState,
  EventSourceConstructorLike,
  ExportClient,
  ExportClientOptions,
  ExportErrorCode,
  ExportEvent,
  ExportListener,
  ExportRequest,
  ExportStatus,
  FetchLike,
  Job,
  JobStatus,
  ServerErrorCode,
  StreamMode,
  Unsubscribe,
} from "../src/index.js";
import { createNodeSession } from "../src/node.js";
import * as reactApi from "../src/react.js";
import { ExportClientProvider, useExport, useExportClient, useExports } from "../src/react.js";
import type { ExportState, ExportsState, UseExportOptions } from "../src/react.js";
import type { SubscribeOptions } from "../src/subscription.js";
import type { BroadcastChannelLike, LockManagerLike } from "../src/crosstab.js";
import type { StorageLike } from "../src/download-once.js";
import type { ExportFile, StreamEvent } from "../src/types.js";

describe("public API types", () => {
  it("is narrow: the design's seven calls, events(), stats() and renewSession(); four values (notifyWhenHidden) and the hooks at the entry points", () => {
    expectTypeOf<keyof ExportClient>().toEqualTypeOf<
      "start" | "get" | "list" | "cancel" | "subscribe" | "waitFor" | "events" | "download" | "downloadOnce" | "stats" | "renewSession"
    >();
    expectTypeOf<ReturnType<ExportClient["stats"]>>().toEqualTypeOf<{
      readonly mode: StreamMode;
      readonly subscribed: string[];
      readonly connections: number;
      readonly tabs: number;
      readonly leader: boolean;
      readonly transport: "sse" | "polling" | undefined;
    }>();
    expectTypeOf<keyof typeof api>().toEqualTypeOf<"createExportClient" | "ExportError" | "isTerminalStatus" | "notifyWhenHidden">();
    expectTypeOf<keyof typeof reactApi>().toEqualTypeOf<
      "ExportClientProvider" | "useExportClient" | "useExport" | "useExports"
    >();
  });

  it("accepts the platform's and the eventsource package's implementations", () => {
    expectTypeOf(globalThis.EventSource).toMatchTypeOf<EventSourceConstructorLike>();
    expectTypeOf(NodeEventSource).toMatchTypeOf<EventSourceConstructorLike>();
    expectTypeOf(globalThis.fetch).toMatchTypeOf<FetchLike>();
    expectTypeOf(navigator.locks).toMatchTypeOf<LockManagerLike>();
    expectTypeOf(globalThis.BroadcastChannel).toMatchTypeOf<new (name: string) => BroadcastChannelLike>();
    expectTypeOf(globalThis.localStorage).toMatchTypeOf<StorageLike>();
    expectTypeOf(createExportClient).parameter(0).toEqualTypeOf<ExportClientOptions | undefined>();
    expectTypeOf(createExportClient()).toEqualTypeOf<ExportClient>();
  });

  it("types statuses as string-literal unions", () => {
    expectTypeOf<JobStatus>().toEqualTypeOf<"PENDING" | "IN_PROGRESS" | "COMPLETED" | "FAILED" | "CANCELLED">();
    expectTypeOf<ExportStatus>().toEqualTypeOf<JobStatus | "ERROR">();
    expectTypeOf<Job["status"]>().toEqualTypeOf<JobStatus>();
    expectTypeOf<StreamEvent["status"]>().toEqualTypeOf<ExportStatus>();
    // @ts-expect-error: "DONE" is not a status
    const status: JobStatus = "DONE";
    void status;
  });

  it("types the requests and results of the client", () => {
    const client = createExportClient();
    expectTypeOf(client.start).parameter(0).toEqualTypeOf<ExportRequest>();
    expectTypeOf(client.start).returns.toEqualTypeOf<Promise<Job>>();
    expectTypeOf(client.get).returns.toEqualTypeOf<Promise<Job>>();
    expectTypeOf(client.waitFor).returns.toEqualTypeOf<Promise<Job>>();
    expectTypeOf(client.subscribe).returns.toEqualTypeOf<Unsubscribe>();
    expectTypeOf(client.download).returns.toEqualTypeOf<void>();
    // @ts-expect-error: rows is required
    void client.start({ durationMs: 1 });
  });

  it("narrows listener events by type", () => {
    createExportClient().subscribe("code", (event) => {
      expectTypeOf(event).toEqualTypeOf<ExportEvent>();
      if (event.type === "snapshot") expectTypeOf(event.job).toEqualTypeOf<Job>();
      else expectTypeOf(event.error).toEqualTypeOf<ExportError>();
    });
  });

  it("types ExportError's fields", () => {
    expectTypeOf<ExportError>().toMatchTypeOf<Error>();
    expectTypeOf<ExportError["code"]>().toEqualTypeOf<ExportErrorCode>();
    expectTypeOf<"NOT_READY">().toMatchTypeOf<ClientErrorCode>();
    expectTypeOf<"NOT_FOUND">().toMatchTypeOf<ServerErrorCode>();
    expectTypeOf<ExportError["httpStatus"]>().toEqualTypeOf<number | undefined>();
    expectTypeOf<ExportError["jobStatus"]>().toEqualTypeOf<ExportStatus | undefined>();
    expectTypeOf<ExportError["job"]>().toEqualTypeOf<Job | undefined>();
  });

  it("narrows terminal statuses", () => {
    const status = "PENDING" as JobStatus;
    if (isTerminalStatus(status)) expectTypeOf(status).toEqualTypeOf<"COMPLETED" | "FAILED" | "CANCELLED">();
  });

  it("types the modes, list, cancel and the subscribe options", () => {
    const client = createExportClient({ mode: "multiplex" });
    expectTypeOf<StreamMode>().toEqualTypeOf<"per-job" | "multiplex">();
    expectTypeOf(client.stats().mode).toEqualTypeOf<StreamMode>();
    // @ts-expect-error: polling is the demo's baseline, not a client mode
    createExportClient({ mode: "polling" });
    expectTypeOf(client.list).returns.toEqualTypeOf<Promise<Job[]>>();
    expectTypeOf(client.cancel).returns.toEqualTypeOf<Promise<Job | undefined>>();
    expectTypeOf(client.subscribe).parameter(2).toEqualTypeOf<SubscribeOptions | undefined>();
    expectTypeOf<ConnectionState>().toEqualTypeOf<"connecting" | "open">();
    expectTypeOf<NonNullable<SubscribeOptions["onError"]>>().parameter(0).toEqualTypeOf<ExportError>();
    expectTypeOf(client.subscribe).parameter(1).toEqualTypeOf<ExportListener>();
    expectTypeOf<ExportFile["expiresAt"]>().toEqualTypeOf<string>();
  });

  it("types the React hooks", () => {
    expectTypeOf(useExport).parameters.toEqualTypeOf<[string | null | undefined, UseExportOptions?]>();
    expectTypeOf(useExport).returns.toEqualTypeOf<ExportState>();
    expectTypeOf<ExportState["status"]>().toEqualTypeOf<ExportStatus | undefined>();
    expectTypeOf<ExportState["error"]>().toEqualTypeOf<ExportError | undefined>();
    expectTypeOf<ExportState["progress"]>().toEqualTypeOf<number>();
    expectTypeOf(useExports).returns.toEqualTypeOf<ExportsState>();
    expectTypeOf<ExportsState["exports"]>().toEqualTypeOf<readonly Job[]>();
    expectTypeOf(useExportClient).returns.toEqualTypeOf<ExportClient>();
    expectTypeOf(ExportClientProvider).parameter(0).toHaveProperty("client").toEqualTypeOf<ExportClient>();
  });
});

describe("the node entry", () => {
  it("takes the eventsource package's class and spreads into createExportClient", () => {
    const session = createNodeSession({ baseUrl: "http://localhost:8080", EventSource: NodeEventSource });
    createExportClient({ mode: "multiplex", ...session });
    expectTypeOf(session.EventSource).toMatchTypeOf<EventSourceConstructorLike>();
  });
});
