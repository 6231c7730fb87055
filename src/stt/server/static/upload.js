// POST a file to /v1/audio/transcriptions with upload progress (XMLHttpRequest, since fetch
// reports no upload progress). Resolves to the verbose_json answer (with word times);
// rejects with {status, code, message}.

export const TRANSCRIPTIONS_PATH = "/v1/audio/transcriptions";

export function transcribeFile(file, { token, language, onProgress }) {
  const form = new FormData();
  form.append("file", file, file.name);
  form.append("model", "whisper-1");
  form.append("response_format", "verbose_json");
  form.append("timestamp_granularities[]", "word");
  if (language) form.append("language", language);
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", TRANSCRIPTIONS_PATH);
    if (token) xhr.setRequestHeader("Authorization", `Bearer ${token}`);
    xhr.responseType = "json";
    xhr.upload.onprogress = (event) => {
      if (event.lengthComputable) onProgress(event.loaded / event.total, "upload");
    };
    xhr.upload.onload = () => onProgress(1, "transcribing");
    xhr.onload = () => {
      if (xhr.status === 200 && xhr.response) {
        resolve(xhr.response);
        return;
      }
      const error = xhr.response?.error ?? {};
      reject({ status: xhr.status, code: error.code ?? null, message: error.message ?? "" });
    };
    xhr.onerror = () => reject({ status: 0, code: null, message: "" });
    xhr.send(form);
  });
}

/** The answer's words as the page keeps them ({text, start_s, end_s}). */
export function answerWords(answer) {
  return (answer.words ?? []).map((w) => ({ text: w.word, start_s: w.start, end_s: w.end }));
}
