// ESLint for the learner view's modules, the build script and the tests (`make lint`).
import js from '@eslint/js';
import globals from 'globals';

export default [
  { ignores: ['js/node_modules/**'] },
  js.configs.recommended,
  {
    files: ['hastexo_xblock/static/js/src/**/*.js'],
    languageOptions: { ecmaVersion: 2025, sourceType: 'module', globals: { ...globals.browser } },
  },
  {
    files: ['js/**/*.mjs'],
    languageOptions: { ecmaVersion: 2025, sourceType: 'module', globals: { ...globals.node } },
  },
  {
    rules: {
      'no-unused-vars': ['error', { args: 'none' }],
      eqeqeq: 'error',
      'no-var': 'error',
      'prefer-const': 'error',
      'no-implied-eval': 'error',
      'no-eval': 'error',
      curly: 'error',
    },
  },
];
