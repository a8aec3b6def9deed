/** The DOM the download needs, typed here so the library does not require lib.dom. */
interface DocumentLike {
  createElement(tag: "a"): {
    href: string;
    download: string;
    rel: string;
    style: { display: string };
    click(): void;
    remove(): void;
  };
  body: { append(node: unknown): void };
}

/**
 * Downloads `href` in the current tab: a temporary `<a download>` click, so no new
 * window and no blob in memory (the BFF answers with `Content-Disposition: attachment`).
 * `name` is a hint only: the BFF's Content-Disposition names the file, and a
 * cross-origin link ignores it.
 */
export function clickDownload(href: string, name: string): void {
  const doc = (globalThis as { document?: DocumentLike }).document;
  if (!doc) throw new TypeError("download() needs a browser document");
  const anchor = doc.createElement("a");
  anchor.href = href;
  anchor.download = name;
  anchor.rel = "noopener";
  anchor.style.display = "none";
  doc.body.append(anchor);
  try {
    anchor.click();
  } finally {
    anchor.remove();
  }
}
