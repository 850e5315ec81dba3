#!/usr/bin/env node
import '../dist/src/cmd/meshauthd.js';
