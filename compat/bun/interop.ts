// The original TypeScript store's side of the interop tests: Bun's native
// S3Client, writing and reading blobs under the original key layout
// (`script-packages/blobs/` + hex of the UTF-8 of the sha512 integrity).
//
// Reads one JSON command on stdin, prints one JSON answer on stdout:
//   {"op": "write", "files": [path, ...]}
//       -> [{"integrity", "key", "size"}, ...]   (each file stored by integrity)
//   {"op": "read", "keys": [key, ...], "out": dir}
//       -> [{"key", "size", "integrity", "path"}, ...]   (bytes saved under dir)
//   {"op": "list", "prefix": prefix}
//       -> [key, ...]
// The bucket and credentials come from SRIBLOB_BUN_S3_{ENDPOINT,BUCKET,
// ACCESS_KEY_ID,SECRET_ACCESS_KEY,REGION}.
import { S3Client } from "bun";

const KEY_PREFIX = "script-packages/blobs/";

function env(name: string): string {
  const value = process.env[`SRIBLOB_BUN_S3_${name}`];
  if (!value) throw new Error(`SRIBLOB_BUN_S3_${name} is not set`);
  return value;
}

const client = new S3Client({
  endpoint: env("ENDPOINT"),
  bucket: env("BUCKET"),
  accessKeyId: env("ACCESS_KEY_ID"),
  secretAccessKey: env("SECRET_ACCESS_KEY"),
  region: env("REGION"),
});

function integrityOf(data: Uint8Array): string {
  const hasher = new Bun.CryptoHasher("sha512");
  hasher.update(data);
  return `sha512-${hasher.digest("base64")}`;
}

function keyOf(integrity: string): string {
  return KEY_PREFIX + Buffer.from(integrity, "utf8").toString("hex");
}

type Command =
  | { op: "write"; files: string[] }
  | { op: "read"; keys: string[]; out: string }
  | { op: "list"; prefix: string };

async function run(command: Command): Promise<unknown> {
  switch (command.op) {
    case "write": {
      const written = [];
      for (const path of command.files) {
        const data = new Uint8Array(await Bun.file(path).arrayBuffer());
        const integrity = integrityOf(data);
        const key = keyOf(integrity);
        // Bun switches to a multipart upload by itself for large bodies.
        await client.write(key, data);
        written.push({ integrity, key, size: data.byteLength });
      }
      return written;
    }
    case "read": {
      const read = [];
      for (const [index, key] of command.keys.entries()) {
        const data = new Uint8Array(await client.file(key).arrayBuffer());
        const path = `${command.out}/${index}`;
        await Bun.write(path, data);
        read.push({ key, size: data.byteLength, integrity: integrityOf(data), path });
      }
      return read;
    }
    case "list": {
      const keys: string[] = [];
      let startAfter: string | undefined;
      for (;;) {
        const page = await client.list({ prefix: command.prefix, startAfter, maxKeys: 1000 });
        const contents = page.contents ?? [];
        for (const entry of contents) keys.push(entry.key);
        if (!page.isTruncated || contents.length === 0) return keys;
        startAfter = contents[contents.length - 1].key;
      }
    }
  }
}

const command = JSON.parse(await Bun.stdin.text()) as Command;
console.log(JSON.stringify(await run(command)));
