// RFC 7386 JSON merge patch, safe for "__proto__" keys.

function isObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

function put(target: Record<string, unknown>, key: string, value: unknown) {
  // Plain assignment to "__proto__" would change the prototype.
  if (key === "__proto__") {
    Object.defineProperty(target, key, {
      value,
      enumerable: true,
      writable: true,
      configurable: true,
    });
  } else target[key] = value;
}

/**
 * Apply an RFC 7386 JSON merge patch to `target` and return the result.
 * Neither argument is mutated.
 *
 * @param target The current value (`null`/`undefined` when none).
 * @param patch The merge patch.
 * @returns The patched value.
 *
 * @example
 * ```ts
 * import { applyMergePatch } from "@presently/presently/client";
 * applyMergePatch({ a: 1, b: 2 }, { b: null, c: 3 }); // { a: 1, c: 3 }
 * ```
 */
export function applyMergePatch(target: unknown, patch: unknown): unknown {
  if (!isObject(patch)) return patch;
  const result: Record<string, unknown> = {};
  if (isObject(target)) {
    for (const key of Object.keys(target)) put(result, key, target[key]);
  }
  for (const key of Object.keys(patch)) {
    const value = patch[key];
    if (value === null) delete result[key];
    else {
      const current = Object.hasOwn(result, key) ? result[key] : undefined;
      put(result, key, applyMergePatch(current, value));
    }
  }
  return result;
}
