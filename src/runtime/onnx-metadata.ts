/**
 * Reads an ONNX file's metadata_props (ModelProto field 14) without a protobuf library: onnxruntime-node exposes no
 * model metadata. Only the top level of the message is walked, through a random-access reader, so the graph (which
 * can hold gigabytes of weights) is skipped by its length and never read. Pure: files come in through ByteReader.
 */

const METADATA_PROPS = 14;
const GRAPH = 7;
const ENTRY_KEY = 1;
const ENTRY_VALUE = 2;

export class OnnxParseError extends Error {}

/** Random access to bytes: a whole buffer, or a file read piece by piece. */
export interface ByteReader {
  readonly size: number;
  read(pos: number, len: number): Uint8Array;
}

export function bufferReader(buf: Uint8Array): ByteReader {
  return { size: buf.length, read: (pos, len) => buf.subarray(pos, pos + len) };
}

interface Field {
  number: number;
  wireType: number;
  /** For length-delimited fields: where the bytes start, and how many. */
  start: number;
  length: number;
}

function* fields(src: ByteReader, from = 0, to = src.size): Generator<Field> {
  let pos = from;
  const varint = (): number => {
    let result = 0;
    let shift = 0;
    for (;;) {
      if (pos >= to) throw new OnnxParseError('truncated varint');
      const b = src.read(pos++, 1)[0];
      result += (b & 0x7f) * 2 ** shift;
      if (b < 0x80) return result;
      shift += 7;
      if (shift > 63) throw new OnnxParseError('varint too long');
    }
  };
  while (pos < to) {
    const key = varint();
    const number = Math.floor(key / 8);
    const wireType = key % 8;
    if (number === 0) throw new OnnxParseError('field number 0');
    let length = 0;
    const start = pos;
    switch (wireType) {
      case 0:
        varint();
        break;
      case 1:
        pos += 8;
        break;
      case 5:
        pos += 4;
        break;
      case 2:
        length = varint();
        if (pos + length > to) throw new OnnxParseError(`field ${number} runs past the end of the file`);
        yield { number, wireType, start: pos, length };
        pos += length;
        continue;
      default:
        throw new OnnxParseError(`unsupported wire type ${wireType}`);
    }
    if (pos > to) throw new OnnxParseError('truncated field');
    yield { number, wireType, start, length };
  }
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** The metadata_props of an ONNX ModelProto; throws OnnxParseError when the bytes are not one. */
export function readOnnxMetadata(input: Uint8Array | ByteReader): Record<string, string> {
  const src = input instanceof Uint8Array ? bufferReader(input) : input;
  const props: Record<string, string> = {};
  let sawGraph = false;
  for (const f of fields(src)) {
    if (f.number === GRAPH && f.wireType === 2) sawGraph = true;
    if (f.number !== METADATA_PROPS || f.wireType !== 2) continue;
    let key = '';
    let value = '';
    for (const e of fields(src, f.start, f.start + f.length)) {
      if (e.wireType !== 2) continue;
      if (e.number === ENTRY_KEY) key = utf8.decode(src.read(e.start, e.length));
      if (e.number === ENTRY_VALUE) value = utf8.decode(src.read(e.start, e.length));
    }
    props[key] = value;
  }
  if (!sawGraph) throw new OnnxParseError('no graph');
  return props;
}
