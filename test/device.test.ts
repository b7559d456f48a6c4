/**
 * Execution providers as data (src/runtime/device.ts): the order devices are tried in, --gpu-id, the one-line reasons
 * a device cannot run, the GPU-against-CPU check, and out-of-memory splitting.
 */
import { describe, expect, test } from 'vitest';
import {
  adapterDiagnostics,
  candidates,
  checkInput,
  compareOutputs,
  CUDA_INSTALL,
  describeCheck,
  explainStartFailure,
  gpuIdProblem,
  isOutOfMemory,
  providerOption,
  runSplitting,
} from '../src/runtime/device.js';

describe('device choice', () => {
  test('auto tries CUDA then the CPU, never WebGPU; an explicit device is tried alone', () => {
    expect(candidates('auto')).toEqual(['cuda', 'cpu']);
    expect(candidates('cpu')).toEqual(['cpu']);
    expect(candidates('cuda')).toEqual(['cuda']);
    expect(candidates('webgpu')).toEqual(['webgpu']);
  });

  test('--gpu-id becomes CUDA\'s deviceId; WebGPU gets no option onnxruntime-node would refuse', () => {
    expect(providerOption('cuda', 3)).toEqual({ name: 'cuda', deviceId: 3 });
    expect(providerOption('cuda', undefined)).toEqual({ name: 'cuda', deviceId: 0 });
    expect(providerOption('webgpu', undefined)).toBe('webgpu');
    expect(providerOption('cpu', undefined)).toBe('cpu');
  });

  test.each([
    ['auto', 1, undefined],
    ['cuda', 0, undefined],
    ['cpu', undefined, undefined],
    ['cpu', 1, /needs --device cuda or auto/],
    ['webgpu', 0, /WebGPU provider picks its adapter itself/],
    ['cuda', -1, /Expected an integer between 0 and 1023 for --gpu-id but received -1/],
    ['cuda', 1.5, /received 1.5/],
  ] as const)('--device %s --gpu-id %s', (device, id, problem) => {
    const p = gpuIdProblem(device, id);
    if (problem === undefined) expect(p).toBeUndefined();
    else expect(p).toMatch(problem);
  });
});

describe('why a device cannot run, in one line', () => {
  test('CUDA without its provider library names the install command', () => {
    const line = explainStartFailure({ device: 'cuda', message: 'OrtSessionOptionsAppendExecutionProvider_Cuda: Failed to load shared library', cudaProviderInstalled: false });
    expect(line).toContain(CUDA_INSTALL);
    expect(line).toMatch(/not installed/);
  });

  test('CUDA with its provider but without CUDA 12 / cuDNN 9 says which libraries it needs', () => {
    const line = explainStartFailure({ device: 'cuda', message: 'Failed to load library libonnxruntime_providers_cuda.so with error: libcudnn.so.9: cannot open shared object file', cudaProviderInstalled: true });
    expect(line).toMatch(/needs CUDA 12 and cuDNN 9/);
    expect(line).toContain('libcudnn.so.9');
  });

  test('CUDA without a device', () => {
    expect(explainStartFailure({ device: 'cuda', message: 'CUDA failure 100: no CUDA-capable device is detected', cudaProviderInstalled: true })).toMatch(/^no usable CUDA device/);
  });

  test('WebGPU without an adapter gives Dawn\'s reason, taken from its stderr', () => {
    // What Debian 12's own Mesa 22.3 lavapipe makes Dawn print (quoted in the issue), and a machine with no driver.
    const stderr = [
      'Warning: Vulkan shaderUniform*ArrayDynamicIndexing required.',
      '    at CheckVkSuccessImpl (/build/Release/_deps/dawn-src/src/dawn/native/vulkan/VulkanError.cpp:106)',
      'Warning: maxDynamicUniformBuffersPerPipelineLayout artificially reduced from 1000000 to 16 to fit dynamic offset allocation limit.',
      'Warning: Vulkan shaderUniform*ArrayDynamicIndexing required.',
    ].join('\n');
    const diagnostics = adapterDiagnostics(stderr);
    expect(diagnostics).toEqual(['Vulkan shaderUniform*ArrayDynamicIndexing required.']);
    const line = explainStartFailure({ device: 'webgpu', message: 'Failed to get a WebGPU adapter: No supported adapters', diagnostics });
    expect(line).toBe('no usable WebGPU adapter: Vulkan shaderUniform*ArrayDynamicIndexing required.');
    expect(explainStartFailure({ device: 'webgpu', message: 'Failed to get a WebGPU adapter: No supported adapters', diagnostics: [] })).toMatch(/mesa-vulkan-drivers/);
    expect(adapterDiagnostics('Warning: vkCreateInstance: Found no drivers!\n')).toEqual(['vkCreateInstance: Found no drivers!']);
  });
});

describe('GPU outputs checked against the CPU', () => {
  const cpu = Float32Array.from([0.1, -0.5, 0.9, 0]);

  test('a drift below the tolerance passes and is reported; one above it, or a NaN, is a mismatch', () => {
    const close = compareOutputs(Float32Array.from([0.1, -0.5 + 2 ** -22, 0.9, 0]), cpu, [1, 1, 2, 2]);
    expect(close.ok).toBe(true);
    expect(close.maxAbsDiff).toBe(2 ** -22);
    expect(describeCheck('webgpu', close)).toBe("outputs match the CPU's within 2.4e-7");
    const far = compareOutputs(Float32Array.from([0.1, -0.5, 0.6, 0]), cpu, [1, 1, 2, 2]);
    expect(far.ok).toBe(false);
    expect(describeCheck('cuda', far)).toBe("cuda's outputs differ from the CPU's by 0.3 (max abs, tolerance 0.02, on a [1,1,2,2] check input): not used");
    const nan = compareOutputs(Float32Array.from([0.1, Number.NaN, 0.9, 0]), cpu, [1, 1, 2, 2]);
    expect(nan.ok).toBe(false);
    expect(describeCheck('cuda', nan)).toMatch(/by a non-finite value/);
    expect(compareOutputs(new Float32Array(3), cpu, [1, 1, 2, 2]).ok).toBe(false);
  });

  test('the check input: the model\'s size, at most 64x64 when the model takes any size, values in [-1, 1], fixed', () => {
    expect(checkInput(3, 64, true).shape).toEqual([1, 3, 64, 64]);
    expect(checkInput(3, 256, true).shape).toEqual([1, 3, 64, 64]);
    expect(checkInput(3, 256, false).shape).toEqual([1, 3, 256, 256]);
    const { x } = checkInput(3, 32, true);
    expect(Math.min(...x)).toBeGreaterThanOrEqual(-1);
    expect(Math.max(...x)).toBeLessThanOrEqual(1);
    expect(Math.max(...x) - Math.min(...x)).toBeGreaterThan(1.9);
    expect(checkInput(3, 32, true).x).toEqual(x);
  });
});

describe('out-of-memory splitting', () => {
  const shape = (n: number): [number, number, number, number] => [n, 1, 1, 2];
  /** A runner that fails with CUDA's message above `fits` images and otherwise returns x * 2 + its own call number. */
  function runner(fits: number) {
    const calls: number[] = [];
    const run = async (x: Float32Array, s: [number, number, number, number]): Promise<Float32Array> => {
      calls.push(s[0]);
      if (s[0] > fits) throw new Error('/onnxruntime_src/onnxruntime/core/framework/bfc_arena.cc:359 Failed to allocate memory for requested buffer of size 123');
      return x.map((v) => v * 2);
    };
    return { run, calls };
  }

  test('a batch that does not fit is halved until it does; the results are those of one call, in order', async () => {
    const x = Float32Array.from({ length: 14 }, (_, i) => i);
    const { run, calls } = runner(2);
    const limit = { max: Number.POSITIVE_INFINITY };
    const out = await runSplitting(run, x, shape(7), new Float32Array(7), limit);
    expect(Array.from(out)).toEqual(Array.from(x, (v) => v * 2));
    expect(calls).toEqual([7, 4, 2, 2, 2, 1]);
    expect(limit.max).toBe(2);
  });

  test('the smaller size is kept for later calls; other errors are not retried', async () => {
    const { run, calls } = runner(4);
    const limit = { max: Number.POSITIVE_INFINITY };
    await runSplitting(run, new Float32Array(16), shape(8), new Float32Array(8), limit);
    expect(limit.max).toBe(4);
    calls.length = 0;
    await runSplitting(run, new Float32Array(16), shape(8), new Float32Array(8), limit);
    expect(calls).toEqual([4, 4]);
    const broken = async (): Promise<Float32Array> => {
      throw new Error('Non-zero status code returned while running Conv node');
    };
    await expect(runSplitting(broken, new Float32Array(4), shape(2), new Float32Array(2), { max: 2 })).rejects.toThrow(/Conv node/);
    expect(isOutOfMemory('CUDA failure 2: out of memory')).toBe(true);
    expect(isOutOfMemory('Invalid input shape')).toBe(false);
  });
});
