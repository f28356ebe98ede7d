// Package docker holds no code: its directory keeps the image (Dockerfile) and the local
// stack (compose.yaml), and its tests check that both say what the rest of the project
// expects, without a Docker engine.
package docker
