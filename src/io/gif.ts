/**
 * A structural check of GIF files, which libvips decodes leniently: a GIF cut short after its first frame, or in the
 * middle of a later one, decodes without a warning (sharp reads only the first frame), so `failOn` cannot catch it.
 * This walks the block structure (GIF89a, section 17 onwards) to the trailer. Pure.
 */

/** Why the bytes are not a complete GIF, or undefined when they are one (or not a GIF at all). */
export function gifProblem(bytes: Uint8Array): string | undefined {
  if (!isGif(bytes)) return undefined;
  let pos = 13; // header (6) and logical screen descriptor (7)
  if (bytes.length < pos) return 'truncated GIF: cut off in its header';
  const flags = bytes[10];
  if (flags & 0x80) pos += 3 * (2 << (flags & 7)); // global colour table
  // Data sub-blocks: a length byte, that many bytes, ..., a zero length.
  const subBlocks = (): boolean => {
    for (;;) {
      if (pos >= bytes.length) return false;
      const n = bytes[pos++];
      if (n === 0) return true;
      pos += n;
    }
  };
  for (let frames = 0; ; ) {
    if (pos >= bytes.length) return `truncated GIF: no trailer after ${frames} ${frames === 1 ? 'frame' : 'frames'}`;
    const block = bytes[pos++];
    if (block === 0x3b) return undefined; // trailer
    if (block === 0x21) {
      pos++; // extension label
      if (!subBlocks()) return `truncated GIF: cut off in an extension block after ${frames} ${frames === 1 ? 'frame' : 'frames'}`;
    } else if (block === 0x2c) {
      if (pos + 9 > bytes.length) return `truncated GIF: cut off in frame ${frames + 1}`;
      const local = bytes[pos + 8];
      pos += 9;
      if (local & 0x80) pos += 3 * (2 << (local & 7)); // local colour table
      pos++; // LZW minimum code size
      if (!subBlocks()) return `truncated GIF: cut off in frame ${frames + 1}`;
      frames++;
    } else {
      return `corrupt GIF: unknown block 0x${block.toString(16).padStart(2, '0')} after ${frames} ${frames === 1 ? 'frame' : 'frames'}`;
    }
  }
}

export function isGif(bytes: Uint8Array): boolean {
  return bytes.length >= 6 && String.fromCharCode(...bytes.subarray(0, 6)).match(/^GIF8[79]a$/) !== null;
}
