/**
 * The app definition (the same JSON the server loads, see docs/protocol.md §1)
 * as TypeScript types, and the mutator argument types inferred from it: pass
 * the definition as an object literal (or `as const`) and
 * `db.mutate.addTodo({...})` checks names and argument types. An app
 * definition whose strings are widened (imported from a `.json` file) still
 * works, untyped. The same goes for query names and arguments
 * (`db.sync('todosOf', {...})`) and for rows (`RowOf<typeof app, 'todos'>`).
 */

export type ColumnType = 'integer' | 'real' | 'text' | 'blob' | 'boolean' | 'json';

export interface ColumnDefinition {
  readonly name: string;
  readonly type: ColumnType;
  readonly nullable?: boolean;
}

export interface TableDefinition {
  readonly name: string;
  readonly columns: readonly ColumnDefinition[];
  readonly primaryKey?: readonly string[];
  readonly access?: { readonly read: string; readonly write: string };
}

export interface MutatorDefinition {
  readonly name: string;
  readonly params: readonly ColumnDefinition[];
  readonly sql: string | readonly string[];
}

/** A named query whose rows a client syncs by subscribing (protocol v2, docs/protocol.md §11). */
export interface QueryDefinition {
  readonly name: string;
  readonly params: readonly ColumnDefinition[];
  /** One per table it syncs: the rows of `table` for which `where` holds. */
  readonly parts: readonly { readonly table: string; readonly where: string }[];
  /** Synced from open (only for a query without params). */
  readonly syncOnOpen?: boolean;
}

export interface AppDefinition {
  readonly version: number;
  readonly tables: readonly TableDefinition[];
  readonly localTables?: readonly TableDefinition[];
  readonly mutators: readonly MutatorDefinition[];
  readonly queries?: readonly QueryDefinition[];
}

export type JsonValue = null | boolean | number | string | readonly JsonValue[] | { readonly [key: string]: JsonValue };

/** What a parameter of each type takes on the wire (docs/protocol.md §2). */
export type ValueOfType<T extends ColumnType> = T extends 'integer' | 'real'
  ? number
  : T extends 'text'
    ? string
    : T extends 'blob'
      ? readonly number[]
      : T extends 'boolean'
        ? boolean
        : JsonValue;

type ParamValue<P> = P extends { readonly type: infer T extends ColumnType; readonly nullable: true }
  ? ValueOfType<T> | null
  : P extends { readonly type: infer T extends ColumnType }
    ? ValueOfType<T>
    : never;

type Simplify<T> = { [K in keyof T]: T[K] } & {};

/** The arguments object of one mutator: nullable parameters may be left out. */
export type MutatorArgs<M> = M extends { readonly params: readonly (infer P)[] }
  ? Simplify<
      { [Q in P as Q extends { readonly nullable: true } ? never : Q extends { name: infer N extends string } ? N : never]: ParamValue<Q> } & {
        [Q in P as Q extends { readonly nullable: true } ? (Q extends { name: infer N extends string } ? N : never) : never]?: ParamValue<Q>;
      }
    >
  : Record<string, JsonValue | undefined>;

/** The query names of an app (`string` when they are not known literally). */
export type QueryName<A extends AppDefinition> = A extends { readonly queries?: readonly (infer Q)[] }
  ? Q extends { readonly name: infer N extends string }
    ? N
    : never
  : never;

/** The arguments of query `N` of app `A` (checked as a mutator's are). */
export type QueryArgs<A extends AppDefinition, N extends string> = string extends QueryName<A>
  ? Record<string, JsonValue | undefined>
  : A extends { readonly queries?: readonly (infer Q)[] }
    ? ParamsArgs<Extract<Q, { readonly name: N }>>
    : never;

/** A query without parameters takes `{}` and nothing else. */
type ParamsArgs<Q> = Q extends { readonly params: readonly [] } ? Record<string, never> : MutatorArgs<Q>;

/** A column's value in `RowOf`. */
type ColumnValue<C> = C extends { readonly type: infer T extends ColumnType }
  ? (T extends 'integer' | 'real'
      ? number
      : T extends 'text'
        ? string
        : T extends 'blob'
          ? Uint8Array
          : T extends 'boolean'
            ? boolean
            : unknown) | (C extends { readonly nullable: true } ? null : never)
  : never;

/**
 * `[name, args, options?]` of `sync`, for hooks that are given the app type
 * but must still tie each query name to its own arguments.
 */
export type SyncParams<A extends AppDefinition, O> = {
  [N in QueryName<A>]: [name: N, args: QueryArgs<A, N>, options?: O];
}[QueryName<A>];

/**
 * The row type of table `T` of app `A`, from its columns: nullable columns
 * are `| null`, booleans `boolean`, json `unknown` (parse it).
 */
export type RowOf<A extends AppDefinition, T extends string> = Extract<
  A['tables'][number] | NonNullable<A['localTables']>[number],
  { readonly name: T }
> extends { readonly columns: readonly (infer C)[] }
  ? Simplify<{ [K in C as K extends { readonly name: infer N extends string } ? N : never]: ColumnValue<K> }>
  : never;

/** The mutator names of an app (`string` when they are not known literally). */
export type MutatorName<A extends AppDefinition> = A['mutators'][number]['name'];

/** The arguments of mutator `N` of app `A`. */
export type ArgsOf<A extends AppDefinition, N extends string> = string extends MutatorName<A>
  ? Record<string, JsonValue | undefined>
  : MutatorArgs<Extract<A['mutators'][number], { readonly name: N }>>;

/**
 * What `mutate` returns at once: three promises for the three moments of a
 * mutation. `local` resolves (to the mutation's id) when it is applied in the
 * worker and visible in every tab, or rejects (`unknown_mutator`,
 * `bad_arguments`, `mutator_failed`) with nothing left behind; `durable` when
 * it is on disk; `server` when the server confirmed it, or rejects with the
 * server's code (`forbidden`, ...) when the server refused it.
 */
export interface Mutation {
  local: Promise<number>;
  durable: Promise<void>;
  server: Promise<void>;
}

/** `db.mutate(name, args)` and its typed shorthand `db.mutate.addTodo(args)`. */
export type Mutate<A extends AppDefinition> = (<N extends MutatorName<A>>(name: N, args: ArgsOf<A, N>) => Mutation) & {
  readonly [N in MutatorName<A>]: (args: ArgsOf<A, N>) => Mutation;
};
