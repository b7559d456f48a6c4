import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const TINY_MODEL = fileURLToPath(new URL('../../fixtures/tiny-random.onnx', import.meta.url));
export const TINY_REF = fileURLToPath(new URL('../../fixtures/tiny-random.ref.json', import.meta.url));
export const CM_BIN = fileURLToPath(new URL('../../bin/cm.js', import.meta.url));
export const fixture = (name: string): string => fileURLToPath(new URL(`../../fixtures/${name}`, import.meta.url));
