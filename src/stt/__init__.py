"""A streaming speech-to-text server: `constants` <- `audio`, `messages`, `config`; `engine`
(the interface, one subpackage per engine) <- `planner` <- `scheduler` <- `session` <- `server`
<- `cli`; `tools` (clients, stress, samples, WER) talk to the server from outside."""
