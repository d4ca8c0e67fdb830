// Writes a TID 1500 SR with RECIST bidirectional measurements using dcmjs (npm package `dcmjs`, MIT),
// the DICOM library of OHIF/Cornerstone, through its Cornerstone measurement adapter: the same code path
// a reader's "Bidirectional" tool measurement takes when OHIF stores it to PACS.
//
//   npm install dcmjs@0.52.2 && node dcmjs_bidirectional.js lines.json out.dcm
//
// lines.json: {"studyUID", "seriesUID", "images": [{"sopInstanceUID", "sopClassUID",
//   "long": [[x, y], [x, y]], "short": [[x, y], [x, y]], "longMm", "shortMm"}]} where x, y are
// Cornerstone image coordinates (the top-left corner of the top-left pixel is (0, 0)).
const fs = require("fs");
const dcmjs = require("dcmjs");

const [inPath, outPath] = process.argv.slice(2);
const spec = JSON.parse(fs.readFileSync(inPath, "utf8"));
const toolState = {};
const meta = {};
for (const im of spec.images) {
  const imageId = "dicomfile:" + im.sopInstanceUID;
  meta[imageId] = im;
  const p = (xy) => ({ x: xy[0], y: xy[1] });
  toolState[imageId] = {
    Bidirectional: {
      data: [{
        handles: { start: p(im.long[0]), end: p(im.long[1]), perpendicularStart: p(im.short[0]),
                   perpendicularEnd: p(im.short[1]) },
        longestDiameter: im.longMm, shortestDiameter: im.shortMm,
        finding: { CodeValue: "108369006", CodingSchemeDesignator: "SCT", CodeMeaning: "Neoplasm" },
        findingSites: [{ CodeValue: "39607008", CodingSchemeDesignator: "SCT", CodeMeaning: "Lung" }],
      }],
    },
  };
}
const metadataProvider = {
  get(type, imageId) {
    const im = meta[imageId];
    if (type === "generalSeriesModule") return { studyInstanceUID: spec.studyUID, seriesInstanceUID: spec.seriesUID };
    if (type === "sopCommonModule") return { sopClassUID: im.sopClassUID, sopInstanceUID: im.sopInstanceUID };
    if (type === "frameNumber") return 1;
    return undefined;
  },
};
const report = dcmjs.adapters.Cornerstone.MeasurementReport.generateReport(toolState, metadataProvider, {});
const dict = dcmjs.data.datasetToDict(report.dataset);
fs.writeFileSync(outPath, Buffer.from(dict.write()));
console.log("wrote", outPath);
