/**
 * Test models with extra metadata: protobuf lets a repeated field appear again at the end of a message, so appending
 * ModelProto.metadata_props entries (field 14: StringStringEntryProto {key = 1, value = 2}) to an ONNX file adds
 * metadata without re-encoding the graph. Only for keys the file does not have yet.
 */
function varint(n: number): number[] {
  const out: number[] = [];
  while (n > 0x7f) {
    out.push((n & 0x7f) | 0x80);
    n >>>= 7;
  }
  out.push(n);
  return out;
}

function field(tag: number, bytes: Uint8Array): Buffer {
  return Buffer.concat([Buffer.from([tag, ...varint(bytes.length)]), bytes]);
}

export function withMetadata(model: Buffer, props: Record<string, string>): Buffer {
  const parts = [model];
  for (const [key, value] of Object.entries(props)) {
    const entry = Buffer.concat([field(0x0a, Buffer.from(key)), field(0x12, Buffer.from(value))]);
    parts.push(field(0x72, entry));
  }
  return Buffer.concat(parts);
}
