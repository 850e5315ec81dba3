import js from '@eslint/js';
import tseslint from 'typescript-eslint';

/**
 * An import that leaves its folder ("../") and names a file inside another folder other than an
 * index.js: "../audit/store.js" is refused, "../audit/index.js", "../auth/handshake/index.js" and
 * "../errors.js" (a top-level module) are not.
 */
const INTO_ANOTHER_FOLDER = String.raw`^(?:\.\./)+[^./][^/]*/(?!(?:[^/]+/)*index\.js$)`;

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'bin/**', 'src/api/generated/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ['**/*.mjs'],
    languageOptions: { globals: { process: 'readonly', setImmediate: 'readonly', console: 'readonly' } },
  },
  {
    rules: {
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_' }],
    },
  },
  // Type-aware rules: a promise is awaited, returned or explicitly voided; a switch over a union
  // handles every member (or has a default).
  {
    files: ['src/**/*.ts', 'test/**/*.ts', 'bench/**/*.ts', 'demo/**/*.ts'],
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/switch-exhaustiveness-check': [
        'error',
        { considerDefaultExhaustiveForUnions: true, requireDefaultForNonUnion: false },
      ],
    },
  },
  // Public faces: a folder of src/ is used from other folders only through its index.ts.
  {
    files: ['src/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              regex: INTO_ANOTHER_FOLDER,
              message: 'Import another folder of src/ through its index.ts (export what is needed there).',
            },
          ],
        },
      ],
    },
  },
);
