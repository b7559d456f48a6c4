/**
 * onnxruntime's WebGPU provider (Dawn) prints its own warnings ("Warning: maxDynamicUniformBuffersPerPipelineLayout
 * artificially reduced ...") straight to file descriptor 2, where no logging setting reaches them. cli.ts runs a
 * WebGPU session in a child process whose stderr goes through this filter, which drops those lines and passes
 * everything else on as it comes (a spinner's partial lines included). Pure.
 */

/**
 * The start of a line Dawn writes to stderr: its severity name, a colon and a space. A message can run over several
 * lines (a Vulkan error adds an indented "    at CheckVkSuccessImpl (...)" and an empty line): lines that start
 * with white space, or are empty, right after a dropped one belong to it. cm's own lines never start that way.
 */
const NATIVE_PREFIXES = ['Warning: ', 'Error: '];

export class NativeLogFilter {
  /** The start of the current line, held back while it may still turn out to be a native log line. */
  private pending = '';
  private mode: 'start' | 'pass' | 'drop' | 'after-drop' = 'start';

  /** Feed stderr text; returns what to write now. */
  push(text: string): string {
    let out = '';
    for (const ch of text) {
      if (this.mode === 'after-drop') {
        if (ch === '\n') continue; // an empty line of the message
        if (ch === ' ' || ch === '\t') {
          this.mode = 'drop';
          continue;
        }
        this.mode = 'start';
      }
      if (this.mode === 'pass') {
        out += ch;
        if (ch === '\n') this.mode = 'start';
      } else if (this.mode === 'drop') {
        if (ch === '\n') this.mode = 'after-drop';
      } else if (ch === '\n') {
        out += `${this.pending}\n`;
        this.pending = '';
      } else {
        this.pending += ch;
        if (NATIVE_PREFIXES.includes(this.pending)) {
          this.mode = 'drop';
          this.pending = '';
        } else if (!NATIVE_PREFIXES.some((p) => p.startsWith(this.pending))) {
          out += this.pending;
          this.pending = '';
          this.mode = 'pass';
        }
      }
    }
    return out;
  }

  /** The end of the stream: whatever was held back. */
  end(): string {
    const rest = this.mode === 'start' || this.mode === 'after-drop' ? this.pending : '';
    this.pending = '';
    this.mode = 'start';
    return rest;
  }
}
