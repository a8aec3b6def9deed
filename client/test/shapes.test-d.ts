import { describe, expectTypeOf, it } from "vitest";
import { createExportClient, notifyWhenHidden } from "../src/index.js";
import type { ExportClient, ExportEvent, Job, NotifyOptions, RequestOptions, Unsubscribe } from "../src/index.js";
import type { ExportState } from "../src/react.js";
import type { SubscribeOptions } from "../src/subscription.js";

describe("the shapes of issue 18", () => {
  it("types events(), signal, etaMs and notify", () => {
    const client = createExportClient();
    expectTypeOf(client.events).parameters.toEqualTypeOf<[string, (RequestOptions | undefined)?]>();
    expectTypeOf(client.events).returns.toMatchTypeOf<AsyncIterable<Job>>();
    expectTypeOf<SubscribeOptions["signal"]>().toEqualTypeOf<AbortSignal | undefined>();
    expectTypeOf<Extract<ExportEvent, { type: "snapshot" }>["etaMs"]>().toEqualTypeOf<number | undefined>();
    expectTypeOf<ExportState["etaMs"]>().toEqualTypeOf<number | undefined>();
    expectTypeOf(notifyWhenHidden).parameters.toEqualTypeOf<[ExportClient, (NotifyOptions | undefined)?]>();
    expectTypeOf(notifyWhenHidden).returns.toEqualTypeOf<Unsubscribe>();
    expectTypeOf<NonNullable<NotifyOptions["title"]>>().parameter(0).toEqualTypeOf<Job>();
  });
});
