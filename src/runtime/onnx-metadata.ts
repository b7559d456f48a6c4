/**
 * Reads an ONNX file's metadata_props (ModelProto field 14) without a protobuf library: onnxruntime-node exposes no
 * model metadata. Only the top level of the message is walked; the graph is skipped by its length. Pure.
 */

const METADATA_PROPS = 14;
const GRAPH = 7;
const ENTRY_KEY = 1;
const ENTRY_VALUE = 2;

export class OnnxParseError extends Error {}

interface Field {
  number: number;
  wireType: number;
  /** For length-delimited fields: the bytes. */
  bytes?: Uint8Array;
}

function* fields(buf: Uint8Array): Generator<Field> {
  let pos = 0;
  const varint = (): number => {
    let result = 0;
    let shift = 0;
    for (;;) {
      if (pos >= buf.length) throw new OnnxParseError('truncated varint');
      const b = buf[pos++];
      result += (b & 0x7f) * 2 ** shift;
      if (b < 0x80) return result;
      shift += 7;
      if (shift > 63) throw new OnnxParseError('varint too long');
    }
  };
  while (pos < buf.length) {
    const key = varint();
    const number = Math.floor(key / 8);
    const wireType = key % 8;
    if (number === 0) throw new OnnxParseError('field number 0');
    switch (wireType) {
      case 0:
        varint();
        yield { number, wireType };
        break;
      case 1:
        pos += 8;
        yield { number, wireType };
        break;
      case 5:
        pos += 4;
        yield { number, wireType };
        break;
      case 2: {
        const len = varint();
        if (pos + len > buf.length) throw new OnnxParseError(`field ${number} runs past the end of the file`);
        yield { number, wireType, bytes: buf.subarray(pos, pos + len) };
        pos += len;
        break;
      }
      default:
        throw new OnnxParseError(`unsupported wire type ${wireType}`);
    }
    if (pos > buf.length) throw new OnnxParseError('truncated field');
  }
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** The metadata_props of an ONNX ModelProto; throws OnnxParseError when the bytes are not one. */
export function readOnnxMetadata(buf: Uint8Array): Record<string, string> {
  const props: Record<string, string> = {};
  let sawGraph = false;
  for (const f of fields(buf)) {
    if (f.number === GRAPH && f.wireType === 2) sawGraph = true;
    if (f.number !== METADATA_PROPS || !f.bytes) continue;
    let key = '';
    let value = '';
    for (const e of fields(f.bytes)) {
      if (e.number === ENTRY_KEY && e.bytes) key = utf8.decode(e.bytes);
      if (e.number === ENTRY_VALUE && e.bytes) value = utf8.decode(e.bytes);
    }
    props[key] = value;
  }
  if (!sawGraph) throw new OnnxParseError('no graph');
  return props;
}
