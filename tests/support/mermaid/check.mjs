// Parse Mermaid text with Mermaid's own parser: reads diagrams from stdin as a JSON list of
// strings, prints a JSON list of null (valid) or the parser's error message, one per diagram.
import { JSDOM } from "jsdom";

const dom = new JSDOM("<!doctype html><html><body></body></html>");
globalThis.window = dom.window;
globalThis.document = dom.window.document;
for (const key of Object.getOwnPropertyNames(dom.window)) {
  if (!(key in globalThis)) {
    try { globalThis[key] = dom.window[key]; } catch { /* read-only in node: keep node's own */ }
  }
}
const { default: mermaid } = await import("mermaid");
mermaid.initialize({ startOnLoad: false });

let input = "";
for await (const chunk of process.stdin) input += chunk;
const out = [];
for (const text of JSON.parse(input)) {
  try {
    await mermaid.parse(text);
    out.push(null);
  } catch (err) {
    out.push(String(err && err.message ? err.message : err));
  }
}
process.stdout.write(JSON.stringify(out));
