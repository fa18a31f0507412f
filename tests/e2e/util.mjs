// Small helpers shared by the end-to-end harness's modules.

import net from "node:net";

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** A port nobody listens on now, on 127.0.0.1. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/** Size of a JSON value as Step Functions counts it: the bytes of its UTF-8 JSON text. */
export const jsonBytes = (value) => Buffer.byteLength(JSON.stringify(value ?? null), "utf8");
