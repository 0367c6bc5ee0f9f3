// RFC 7386 JSON merge patch, safe for "__proto__" keys.

function isObject(value: unknown): value is Record<string, unknown> {
  return value != null && typeof value == "object" && !Array.isArray(value);
}

function put(target: Record<string, unknown>, key: string, value: unknown) {
  // Plain assignment to "__proto__" would change the prototype.
  if (key == "__proto__") {
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
  // A spread copies "__proto__" as a plain own property, and a computed key
  // in a literal defines one; assigning it would set the prototype instead.
  // (Not through `put`: this one is in the client bundle, where a property
  // descriptor costs more than the spread.)
  let result: Record<string, unknown> = isObject(target) ? { ...target } : {};
  for (const key of Object.keys(patch)) {
    const value = patch[key];
    if (value === null) delete result[key];
    else {
      const current = Object.hasOwn(result, key) ? result[key] : undefined;
      const next = applyMergePatch(current, value);
      if (key == "__proto__") result = { ...result, [key]: next };
      else result[key] = next;
    }
  }
  return result;
}

/**
 * One merge patch with the effect of applying `first` then `second`, or
 * `undefined` when no patch has it: `second` patches into a value that
 * `first` set to a non-object or deleted, which a merge patch cannot say.
 *
 * @param first The earlier patch.
 * @param second The later patch.
 * @returns The composed patch, or `undefined`.
 *
 * @example
 * ```ts
 * import { applyMergePatch, composeMergePatch } from "./merge_patch.ts";
 * const both = composeMergePatch({ cursor: { x: 1 } }, { cursor: { y: 2 }, typing: null });
 * console.log(both); // { cursor: { x: 1, y: 2 }, typing: null }
 * console.log(applyMergePatch({ typing: true }, both)); // { cursor: { x: 1, y: 2 } }
 * console.log(composeMergePatch({ cursor: null }, { cursor: { x: 1 } })); // undefined
 * ```
 */
export function composeMergePatch(first: unknown, second: unknown): unknown {
  if (!isObject(second)) return second;
  if (!isObject(first)) return undefined;
  const result: Record<string, unknown> = {};
  for (const key of Object.keys(first)) put(result, key, first[key]);
  for (const key of Object.keys(second)) {
    let value = second[key];
    if (isObject(value) && Object.hasOwn(result, key)) {
      value = composeMergePatch(result[key], value);
      if (value === undefined) return undefined;
    }
    put(result, key, value);
  }
  return result;
}
