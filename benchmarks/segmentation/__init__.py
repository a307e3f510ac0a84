"""The segmentation family: the ECO-M2F report and its gate study (`make report-segmentation`)."""
